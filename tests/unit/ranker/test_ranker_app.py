"""The public app in-process (httpx.ASGITransport), with a real bundle and a real SQLite DB."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rankswap.productdb import ProductDB
from rankswap_ranker.app import RankerAPI, RankFastPath, create_app
from rankswap_ranker.bundle import Bundle
from rankswap_ranker.candidates import LazyProductDB
from rankswap_ranker.registry import BundleRegistry
from rankswap_ranker.routes import RankEndpoint
from rankswap_ranker.settings import RankerSettings

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ranker")


BODY: dict[str, Any] = {
    "tenant_id": "acme",
    "context": {
        "employee_id": 1,
        "description": "taxi to client",
        "amount": 2480,
        "date": "2026-11-27",
    },
}


@pytest.fixture
def registry(loaded: Bundle) -> BundleRegistry[Bundle]:
    reg: BundleRegistry[Bundle] = BundleRegistry(1)
    reg.activate(loaded)
    return reg


@pytest.fixture
async def client(
    settings: RankerSettings, registry: BundleRegistry[Bundle], db_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, registry, LazyProductDB(db_url))
    async with _client(app) as c:
        yield c


async def test_rank_returns_items_best_first_with_versions(
    client: httpx.AsyncClient, loaded: Bundle
) -> None:
    r = await client.post("/v1/rank", json=BODY)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [i["id"] for i in doc["items"]] == [50, 49, 48, 47, 46]  # default top_k 5
    assert {"id", "code", "name", "category", "score"} <= set(doc["items"][0])
    assert doc["candidates"] == 50
    assert doc["model_version"] == loaded.ref.model.version
    assert doc["features_version"] == loaded.ref.features.version
    assert r.headers["x-rankswap-bundle"] == loaded.bundle_id
    assert r.headers["x-rankswap-model-version"] == loaded.ref.model.version
    assert r.headers["x-rankswap-features-version"] == loaded.ref.features.version


async def test_top_k_is_honoured_and_bounded(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/rank", json={**BODY, "top_k": 12})
    assert len(r.json()["items"]) == 12
    r = await client.post("/v1/rank", json={**BODY, "top_k": 101})
    assert r.status_code == 422
    assert "top_k" in r.json()["message"]
    r = await client.post("/v1/rank", json={**BODY, "top_k": 0})
    assert r.status_code == 422
    assert "top_k" in r.json()["message"]


async def test_unknown_tenant_is_404_and_empty_tenant_is_an_empty_list(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/v1/rank", json={**BODY, "tenant_id": "nobody"})
    assert r.status_code == 404
    assert r.json()["error"] == "unknown_tenant"
    r = await client.post("/v1/rank", json={**BODY, "tenant_id": "empty"})
    assert r.status_code == 200
    assert r.json()["items"] == []
    assert r.json()["candidates"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"context": BODY["context"]}, "tenant_id"),
        ({"tenant_id": "acme"}, "context"),
        ({**BODY, "context": {**BODY["context"], "amount": "lots"}}, "context.amount"),
        ({**BODY, "context": {**BODY["context"], "amount": -3}}, "context.amount"),
        ({**BODY, "context": {**BODY["context"], "date": "27/11/2026"}}, "context.date"),
        ({**BODY, "context": {**BODY["context"], "employee_id": -1}}, "context.employee_id"),
        ({**BODY, "surprise": 1}, "surprise"),
        ({**BODY, "tenant_id": ""}, "tenant_id"),
    ],
)
async def test_malformed_requests_are_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    r = await client.post("/v1/rank", json=body)
    assert r.status_code == 422
    doc = r.json()
    assert doc["error"] == "invalid_request"
    assert doc["message"].startswith(field + ":"), doc["message"]


async def test_body_that_is_not_json_is_422(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/rank", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


async def test_new_item_ranks_in_the_next_request_with_defaults(
    client: httpx.AsyncClient, db: ProductDB
) -> None:
    before = (await client.post("/v1/rank", json={**BODY, "top_k": 100})).json()
    new_id = db.add_item(
        "acme", code="NEW", name="brand new", category="brand-new-cat", account_code="9999"
    )
    after = (await client.post("/v1/rank", json={**BODY, "top_k": 100})).json()
    assert after["candidates"] == before["candidates"] + 1
    ids = [i["id"] for i in after["items"]]
    assert new_id in ids
    # No feature row and an unseen category: default features, no category bonus.
    item = next(i for i in after["items"] if i["id"] == new_id)
    assert item["score"] == 0.0
    assert item["category"] == "brand-new-cat"
    metrics = (await client.get("/metrics")).text
    assert 'rankswap_ranker_missing_feature_rows_total{table="item"} 1.0' in metrics
    assert 'rankswap_ranker_missing_feature_rows_total{table="category"} 1.0' in metrics
    # Only the new item's category is unknown to the model's encoder.
    assert 'rankswap_ranker_unknown_categories_total{field="category"} 1.0' in metrics


async def test_no_bundle_yet_is_503_and_not_ready(settings: RankerSettings, db_url: str) -> None:
    app = create_app(settings, BundleRegistry(), LazyProductDB(db_url))
    async with _client(app) as c:
        r = await c.post("/v1/rank", json=BODY)
        assert r.status_code == 503
        assert r.json()["error"] == "no_active_bundle"
        assert (await c.get("/readyz")).status_code == 503
        assert (await c.get("/healthz")).status_code == 200


async def test_database_unreachable_is_503_and_recovers(
    settings: RankerSettings, registry: BundleRegistry[Bundle], tmp_path: Any, db_url: str
) -> None:
    from pathlib import Path

    real = Path(db_url.removeprefix("sqlite:///"))
    missing = tmp_path / "later.db"
    app = create_app(settings, registry, LazyProductDB(f"sqlite:///{missing}"))
    async with _client(app) as c:
        r = await c.post("/v1/rank", json=BODY)
        assert r.status_code == 503
        assert r.json()["error"] == "database_unavailable"
        assert "unavailable" in r.json()["message"] or "does not exist" in r.json()["message"]
        real.rename(missing)  # the database comes back
        r = await c.post("/v1/rank", json=BODY)
        assert r.status_code == 200, r.text


async def test_metrics_and_readiness(client: httpx.AsyncClient, loaded: Bundle) -> None:
    await client.post("/v1/rank", json=BODY)
    await client.post("/v1/rank", json={**BODY, "tenant_id": "nobody"})
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["bundle_id"] == loaded.bundle_id
    text = (await client.get("/metrics")).text
    assert 'rankswap_ranker_requests_total{route="/v1/rank",status="200"} 1.0' in text
    assert 'rankswap_ranker_requests_total{route="/v1/rank",status="404"} 1.0' in text
    assert "rankswap_ranker_request_duration_seconds_bucket" in text


async def test_the_workers_ranking_cpu_is_counted(client: httpx.AsyncClient) -> None:
    """``rankswap_ranker_rank_cpu_seconds_total`` grows with every ranking, errors included:
    against the process CPU it tells what everything around ranking costs per request."""

    def counted(text: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith("rankswap_ranker_rank_cpu_"))
        return float(line.split()[-1])

    before = counted((await client.get("/metrics")).text)
    assert (await client.post("/v1/rank", json=BODY)).status_code == 200
    after_one = counted((await client.get("/metrics")).text)
    assert after_one > before
    assert (await client.post("/v1/rank", json={**BODY, "tenant_id": "nobody"})).status_code == 404
    assert counted((await client.get("/metrics")).text) > after_one


async def test_rank_requests_never_enter_the_frameworks_stack(
    settings: RankerSettings, registry: BundleRegistry[Bundle], db_url: str
) -> None:
    """The fast path, the body limit and the request metrics wrap the framework's whole stack
    (its error, telemetry and body-limit middlewares): a JSON POST /v1/rank is answered
    without passing any of it, every other request still passes it, and both are counted."""
    seen: list[str] = []

    class Witness:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope.get("path", ""))
            await self.app(scope, receive, send)

    app = create_app(settings, registry, LazyProductDB(db_url))
    app.add_middleware(Witness)  # a framework middleware, inside its error handling
    async with _client(app) as c:
        assert (await c.post("/v1/rank", json=BODY)).status_code == 200
        assert (await c.get("/healthz")).status_code == 200
        text = (await c.get("/metrics")).text
    assert seen == ["/healthz", "/metrics"]
    assert 'rankswap_ranker_requests_total{route="/v1/rank",status="200"} 1.0' in text
    assert 'rankswap_ranker_requests_total{route="/healthz",status="200"} 1.0' in text


async def test_a_bug_on_the_fast_path_is_a_500_envelope_and_a_log_line(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Outside the framework's stack nothing else would turn an unforeseen exception into the
    error envelope: the fast path does, logs the traceback, and counts the 500."""

    def broken(self: RankEndpoint, outcome: Any) -> dict[str, str]:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(RankEndpoint, "headers", broken)
    app = create_app(settings, registry, LazyProductDB(db_url))
    async with _client(app) as c:
        r = await c.post("/v1/rank", json=BODY)
        text = (await c.get("/metrics")).text
    assert r.status_code == 500
    assert r.json()["error"] == "internal_error"
    assert "secret" not in r.text
    assert any(
        rec.exc_info and "secret internals" in str(rec.exc_info[1]) for rec in caplog.records
    )
    assert 'rankswap_ranker_requests_total{route="/v1/rank",status="500"} 1.0' in text


class _BrokenSource(LazyProductDB):
    """A product DB whose candidate query hits a bug (not a DB outage)."""

    def rank_inputs(self, entered: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")


async def test_unexpected_failure_is_500_without_details(
    settings: RankerSettings, registry: BundleRegistry[Bundle], db_url: str
) -> None:
    app = create_app(settings, registry, _BrokenSource(db_url))
    async with _client(app) as c:
        r = await c.post("/v1/rank", json=BODY)
    assert r.status_code == 500
    assert r.json()["error"] == "internal_error"
    assert "secret" not in r.text


class _ThreadRecorder(LazyProductDB):
    """The real candidate source, noting the thread each ranking reads it from."""

    threads: list[int]

    def rank_inputs(self, entered: Any, **kwargs: Any) -> Any:
        self.threads.append(threading.get_ident())
        return super().rank_inputs(entered, **kwargs)


@pytest.mark.parametrize(
    ("database_url", "on_loop"),
    [("sqlite:///product.db", True), ("postgresql+psycopg://ranker@db/products", False)],
)
async def test_rank_runs_on_the_event_loop_for_sqlite_and_in_the_thread_pool_for_postgres(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    db_url: str,
    database_url: str,
    on_loop: bool,
) -> None:
    source = _ThreadRecorder(db_url)
    source.threads = []
    app = create_app(settings.model_copy(update={"database_url": database_url}), registry, source)
    async with _client(app) as c:
        r = await c.post("/v1/rank", json=BODY)
    assert r.status_code == 200, r.text
    assert (source.threads == [threading.get_ident()]) is on_loop
    assert len(source.threads) == 1


_DEEP = b'{"tenant_id": "acme", "context": ' + b"[" * 3000 + b"]" * 3000 + b"}"
PARITY_BODIES: list[tuple[str, bytes]] = [
    ("application/json", json.dumps(BODY).encode()),
    ("application/json; charset=utf-8", json.dumps({**BODY, "top_k": 3}).encode()),
    ("application/merge-patch+json", json.dumps(BODY).encode()),
    ("application/json", json.dumps({**BODY, "top_k": 101}).encode()),
    ("application/json", json.dumps({**BODY, "tenant_id": "nobody"}).encode()),
    ("application/json", json.dumps({**BODY, "extra": 1}).encode()),
    (
        "application/json",
        json.dumps({**BODY, "context": {**BODY["context"], "amount": "1"}}).encode(),
    ),
    ("application/json", json.dumps({**BODY, "context": {**BODY["context"], "date": 0}}).encode()),
    (
        "application/json",
        json.dumps(
            {
                **BODY,
                "context": {
                    "employee_id": 12.0,
                    **{k: v for k, v in BODY["context"].items() if k != "employee_id"},
                },
            }
        ).encode(),
    ),
    ("application/json", b'{"tenant_id": "acme", "context": '),
    ("application/json", b"\xff\xfe not utf-8"),
    ("application/json", _DEEP),
    ("application/json", b"[1, 2]"),
    ("application/json", b"null"),
    ("application/json", b""),
    ("text/plain", json.dumps(BODY).encode()),
]


async def test_the_fast_path_answers_as_the_framework_route_does(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every JSON POST /v1/rank is answered past the framework's routing (RankFastPath), with
    the status, body and headers the FastAPI route gives the same request."""
    fast = create_app(settings, registry, LazyProductDB(db_url))
    plain = create_app(settings, registry, LazyProductDB(db_url))
    assert isinstance(plain, RankerAPI)
    plain.front = [m for m in plain.front if m.cls is not RankFastPath]  # type: ignore[comparison-overlap]
    taken: list[bytes] = []
    fast_path = RankEndpoint.fast_path

    async def counting(self: RankEndpoint, raw: bytes, *args: Any) -> None:
        taken.append(raw)
        await fast_path(self, raw, *args)

    monkeypatch.setattr(RankEndpoint, "fast_path", counting)
    async with _client(fast) as f, _client(plain) as p:
        for content_type, raw in PARITY_BODIES:
            headers = {"content-type": content_type}
            a = await f.post("/v1/rank", content=raw, headers=headers)
            b = await p.post("/v1/rank", content=raw, headers=headers)
            assert (a.status_code, a.content) == (b.status_code, b.content), (
                content_type,
                raw[:60],
            )
            assert dict(a.headers) == dict(b.headers), (content_type, raw[:60])
    json_bodies = [raw for kind, raw in PARITY_BODIES if "json" in kind and raw]
    assert taken == json_bodies
