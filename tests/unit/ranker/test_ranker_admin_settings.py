"""Admin API authentication and routes (in-process), settings, and the checked-in OpenAPI."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from tests.unit.ranker.builders import Published

from rankswap.artifacts import parse_uri
from rankswap_ranker import bundle as bundles
from rankswap_ranker.admin import create_admin_app
from rankswap_ranker.convergence import PodView, RunDir
from rankswap_ranker.coordinator import Coordinator, Refresher
from rankswap_ranker.metrics import RankerMetrics
from rankswap_ranker.openapi import DOC_PATH, render
from rankswap_ranker.server import PodAdmin
from rankswap_ranker.settings import RankerSettings, mask_url

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _admin(settings: RankerSettings, cache_dir: Path) -> httpx.AsyncClient:
    run_dir = RunDir(settings.effective_run_dir)
    coordinator = Coordinator(
        run_dir,
        PodView(run_dir, 1),
        RankerMetrics(CollectorRegistry()),
        allowed_roots=[parse_uri(r) for r in settings.allowed_roots],
        resolver=lambda m, f: bundles.resolve(m, f, cache_dir),
        validator=bundles.load,
    )
    refresher = Refresher(coordinator, 60, lambda uri: "")
    app = create_admin_app(settings, PodAdmin(coordinator, refresher, None))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "s3cret"},
        {"Authorization": "Basic s3cret"},
    ],
    ids=["missing", "wrong", "no-scheme", "basic"],
)
async def test_admin_refuses_missing_or_wrong_tokens(
    settings: RankerSettings, cache_dir: Path, headers: dict[str, str], published: Published
) -> None:
    async with _admin(settings, cache_dir) as c:
        r = await c.get("/admin/v1/state", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"
        body = {"model_uri": published.model_uri, "features_uri": published.features_uri}
        assert (await c.put("/admin/v1/bundle", json=body, headers=headers)).status_code == 401


async def test_admin_accepts_the_token_and_a_bundle(
    settings: RankerSettings, cache_dir: Path, published: Published
) -> None:
    auth = {"Authorization": "Bearer s3cret"}
    async with _admin(settings, cache_dir) as c:
        body = {"model_uri": published.model_uri, "features_uri": published.features_uri}
        r = await c.put("/admin/v1/bundle", json=body, headers=auth)
        assert r.status_code == 202
        assert r.json()["request_id"] == 1
        state = (await c.get("/admin/v1/state", headers=auth)).json()
        assert state["desired"]["model_uri"] == published.model_uri
        assert state["desired"]["status"] == "loading"  # nobody runs the loader in this test
        assert state["refresher"]["following"] == []
        r = await c.put("/admin/v1/bundle", json={**body, "extra": 1}, headers=auth)
        assert r.status_code == 422
        r = await c.put(
            "/admin/v1/bundle",
            json={**body, "model_uri": "file:///etc/models/x/latest"},
            headers=auth,
        )
        assert r.status_code == 400
        assert r.json()["error"] == "uri_not_allowed"


async def test_admin_token_from_a_file_is_reread(
    settings: RankerSettings, cache_dir: Path, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    s = settings.model_copy(update={"admin_token_file": token})
    async with _admin(s, cache_dir) as c:
        ok = await c.get("/admin/v1/state", headers={"Authorization": "Bearer first"})
        assert ok.status_code == 200
        token.write_text("second\n")  # the Secret was rotated
        old = await c.get("/admin/v1/state", headers={"Authorization": "Bearer first"})
        assert old.status_code == 401
        new = await c.get("/admin/v1/state", headers={"Authorization": "Bearer second"})
        assert new.status_code == 200


async def test_admin_without_a_configured_token_refuses_everything(
    settings: RankerSettings, cache_dir: Path
) -> None:
    s = settings.model_copy(update={"admin_token": None})
    async with _admin(s, cache_dir) as c:
        r = await c.get("/admin/v1/state", headers={"Authorization": "Bearer "})
        assert r.status_code == 401


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RANKSWAP_WORKERS", "3")
    monkeypatch.setenv("RANKSWAP_ALLOWED_ROOTS", "s3://b/p, file:///srv/artifacts")
    monkeypatch.setenv("RANKSWAP_ADMIN_TOKEN", "hunter2")
    monkeypatch.setenv("RANKSWAP_DATABASE_URL", "postgresql+psycopg://app:pw@db/product")
    s = RankerSettings.from_env(public_port=9000)
    assert s.workers == 3
    assert s.public_port == 9000
    assert s.allowed_roots == ["s3://b/p", "file:///srv/artifacts"]
    masked = s.masked()
    assert masked["admin_token"] == "***"
    assert "pw" not in json.dumps(masked)
    assert masked["database_url"] == "postgresql+psycopg://app:***@db/product"
    assert s.effective_run_dir.name == "rankswap-ranker-9000"
    monkeypatch.setenv("RANKSWAP_ALLOWED_ROOTS", '["s3://b/p"]')
    assert RankerSettings().allowed_roots == ["s3://b/p"]


@pytest.mark.parametrize(
    "bad",
    [
        {"workers": 0},
        {"top_k_default": 50, "top_k_max": 10},
        {"model_uri": "file:///x/models/m/latest"},
        {"allowed_roots": ["http://nope"]},
        {"public_port": 9000, "admin_port": 9000},
    ],
)
def test_settings_refuse_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RankerSettings(**bad)  # type: ignore[arg-type]


def test_mask_url_without_credentials_is_unchanged() -> None:
    assert mask_url("sqlite:///work/product.db") == "sqlite:///work/product.db"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_checked_in_openapi_is_current() -> None:
    path = Path(__file__).resolve().parents[3] / DOC_PATH
    assert path.read_text(encoding="utf-8") == render(), (
        "docs/openapi-ranker.json is stale: run `python -m rankswap_ranker.openapi`"
    )


def test_every_setting_is_documented_in_ranker_md() -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "RANKER.md").read_text(encoding="utf-8")
    missing = [n for n in RankerSettings.model_fields if f"RANKSWAP_{n.upper()}" not in text]
    assert not missing, f"docs/RANKER.md does not mention {missing}"


def test_the_admin_state_schema_is_the_shared_pod_state_model() -> None:
    """The OpenAPI document describes what the operator parses (rankswap.podstate.PodState)."""
    from rankswap.podstate import PodState

    doc = json.loads(render())
    ok = doc["paths"]["/admin/v1/state"]["get"]["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/PodState"}
    schema = doc["components"]["schemas"]["PodState"]
    assert set(schema["properties"]) == set(PodState.model_fields)
    assert {"ready", "converged", "workers", "desired", "target", "active"} <= set(
        schema["required"]
    )
