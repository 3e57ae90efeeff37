"""The HTTP contract of both ports, in-process: one error envelope, strict bodies, body limits,
bearer parsing, and OpenAPI documents that say what the server does (issue 15, items 2 and 5).

The same limits against a real uvicorn server (silent connections, 413 while the client is still
sending) are in tests/integration/ranker/test_ranker_http.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from rankswap.podstate import PodState
from rankswap_ranker.admin import bearer_token, create_admin_app
from rankswap_ranker.app import create_app
from rankswap_ranker.bundle import Bundle
from rankswap_ranker.candidates import LazyProductDB
from rankswap_ranker.registry import BundleRegistry
from rankswap_ranker.schemas import CohortSpec
from rankswap_ranker.settings import RankerSettings

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

BODY: dict[str, Any] = {
    "tenant_id": "acme",
    "context": {"employee_id": 1, "description": "taxi", "amount": 2480, "date": "2026-11-27"},
}
AUTH = {"Authorization": "Bearer s3cret"}
ENVELOPE_KEYS = {"error", "message", "detail"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Backend:
    """The admin API's backend for contract tests: accepts everything, records nothing."""

    def request_bundle(
        self,
        model_uri: str,
        features_uri: str,
        refresh_interval_s: float | None,
        cohort: CohortSpec | None = None,
    ) -> int:
        return 1

    def state(self) -> PodState:
        return PodState(
            workers_expected=1,
            ready=False,
            converged=False,
            desired=None,
            target=None,
            active=None,
            workers=[],
        )


def _public(settings: RankerSettings, db_url: str) -> FastAPI:
    registry: BundleRegistry[Bundle] = BundleRegistry()  # no bundle: a valid body gets 503
    return create_app(settings, registry, LazyProductDB(db_url))


@pytest.fixture
async def public(settings: RankerSettings, db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_public(settings, db_url))
    async with httpx.AsyncClient(transport=transport, base_url="http://ranker") as c:
        yield c


@pytest.fixture
async def admin(settings: RankerSettings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_admin_app(settings, _Backend()))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as c:
        yield c


def _envelope(r: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    doc: dict[str, Any] = r.json()
    assert set(doc) <= ENVELOPE_KEYS and {"error", "message"} <= set(doc), doc
    assert doc["error"] == error, doc
    assert isinstance(doc["message"], str) and doc["message"]
    return doc


# One envelope for every error ------------------------------------------------------------

NOT_UTF8 = b'{"tenant_id": "\xff\xfe", "context": {}}'
DEEP = b'{"tenant_id": ' + b"[" * 1000 + b"]" * 1000 + b"}"
DEEPER = b"[" * 30_000 + b"]" * 30_000  # within the body limit


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (NOT_UTF8, "body: not UTF-8 text"),
        (DEEP, "body: JSON nested too deeply"),
        (DEEPER, "body: JSON nested too deeply"),
        (b"{not json", "body: "),
    ],
    ids=["not-utf8", "nested-1000", "nested-30000", "not-json"],
)
async def test_unparsable_bodies_are_422_in_the_envelope_on_both_ports(
    public: httpx.AsyncClient, admin: httpx.AsyncClient, raw: bytes, reason: str
) -> None:
    headers = {"content-type": "application/json"}
    doc = _envelope(
        await public.post("/v1/rank", content=raw, headers=headers), 422, "invalid_request"
    )
    assert doc["message"].startswith(reason), doc
    r = await admin.put("/admin/v1/bundle", content=raw, headers={**headers, **AUTH})
    assert _envelope(r, 422, "invalid_request")["message"].startswith(reason)


async def test_unknown_paths_and_methods_use_the_envelope_on_both_ports(
    public: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    _envelope(await public.get("/nope"), 404, "not_found")
    _envelope(await admin.get("/admin/v1/nope", headers=AUTH), 404, "not_found")
    r = await public.delete("/v1/rank")
    _envelope(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"
    r = await admin.post("/admin/v1/state", headers=AUTH)
    _envelope(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET"
    _envelope(await admin.get("/admin/v1/state"), 401, "unauthorized")


async def test_an_unhandled_exception_is_a_500_envelope(settings: RankerSettings) -> None:
    app = create_admin_app(settings, _Backend())

    @app.get("/boom")
    def boom() -> None:
        raise KeyError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as c:
        r = await c.get("/boom")
    assert "secret" not in _envelope(r, 500, "internal_error")["message"]


# Strict public body ---------------------------------------------------------------------


def _with(context: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {**BODY, **top, "context": {**BODY["context"], **(context or {})}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_with({"amount": "2480"}), "context.amount"),
        (_with({"amount": True}), "context.amount"),
        (_with(top_k=True), "top_k"),
        (_with(top_k="5"), "top_k"),
        (_with(top_k=5.5), "top_k"),
        (_with(top_k=1e300), "top_k"),
        (_with({"employee_id": "12"}), "context.employee_id"),
        (_with({"vendor_id": 4.5}), "context.vendor_id"),
        (_with({"date": 0}), "context.date"),
        (_with({"date": "0"}), "context.date"),
        (_with({"date": "2026-11-27T00:00:00"}), "context.date"),
        (_with({"date": "2026-02-30"}), "context.date"),
        (_with({"description": 5}), "context.description"),
        (_with(tenant_id=7), "tenant_id"),
    ],
    ids=lambda v: json.dumps(v)[:60] if isinstance(v, dict) else v,
)
async def test_public_body_is_strict(
    public: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    doc = _envelope(await public.post("/v1/rank", json=body), 422, "invalid_request")
    assert doc["message"].startswith(field + ":"), doc
    assert all("input" not in d for d in doc["detail"])  # the body is never echoed


async def test_a_valid_body_passes_validation(public: httpx.AsyncClient) -> None:
    _envelope(await public.post("/v1/rank", json=_with(top_k=3)), 503, "no_active_bundle")
    _envelope(
        await public.post("/v1/rank", json=_with({"amount": 2480.5})), 503, "no_active_bundle"
    )
    # JSON Schema's integer includes 12.0 (generated clients send it).
    r = await public.post("/v1/rank", json=_with({"employee_id": 12.0}, top_k=5.0))
    _envelope(r, 503, "no_active_bundle")


# Body limits ------------------------------------------------------------------------------


def _largest_rank_body() -> bytes:
    """The largest valid /v1/rank body: every string at its maximum, every character escaped
    as a surrogate pair (12 bytes each), the widest numbers."""
    wide = "\U0001f600"
    doc = {
        "tenant_id": wide * 128,
        "context": {
            "employee_id": 2**31 - 1,
            "vendor_id": 2**31 - 1,
            "description": wide * 2000,
            "amount": 999999999999.9999,
            "date": "2026-11-27",
        },
        "top_k": 100,
    }
    return json.dumps(doc, ensure_ascii=True, indent=2).encode()


def _largest_bundle_body() -> bytes:
    wide = "\U0001f600"
    uri = "s3://b/" + wide * 2041
    doc = {"model_uri": uri, "features_uri": uri, "refresh_interval_s": 86400.0}
    return json.dumps(doc, ensure_ascii=True, indent=2).encode()


def _largest_cohort_push() -> bytes:
    """The largest push with a cohort, as the operator's client (httpx) encodes it: compact
    UTF-8 (four-byte characters in four 2,048-character URIs, 200 tenant ids of 128)."""
    wide = "\U0001f600"
    uri = "s3://b/" + wide * 2041
    tenants = [f"{i:03d}" + "x" * 125 for i in range(200)]
    cohort = {"model_uri": uri, "features_uri": uri, "tenants": tenants, "percent": 100}
    doc = {"model_uri": uri, "features_uri": uri, "refresh_interval_s": 86400.0, "cohort": cohort}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


async def test_defaults_admit_the_largest_legitimate_requests(
    public: httpx.AsyncClient, admin: httpx.AsyncClient, settings: RankerSettings
) -> None:
    headers = {"content-type": "application/json"}
    rank, push = _largest_rank_body(), _largest_bundle_body()
    assert len(rank) < settings.public_max_body_bytes
    assert len(push) < settings.admin_max_body_bytes
    r = await public.post("/v1/rank", content=rank, headers=headers)
    _envelope(r, 503, "no_active_bundle")  # read, parsed and validated
    r = await admin.put("/admin/v1/bundle", content=push, headers={**headers, **AUTH})
    assert r.status_code == 202, r.text
    cohort_push = _largest_cohort_push()
    assert len(cohort_push) < settings.admin_max_body_bytes, len(cohort_push)
    r = await admin.put("/admin/v1/bundle", content=cohort_push, headers={**headers, **AUTH})
    assert r.status_code == 202, r.text


async def _chunks(total: int, size: int = 4096) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_bodies_over_the_limit_are_413_in_the_envelope(
    settings: RankerSettings, db_url: str, chunked: bool
) -> None:
    s = settings.model_copy(update={"public_max_body_bytes": 2048, "admin_max_body_bytes": 1024})
    apps = [
        (_public(s, db_url), "POST", "/v1/rank", 2048),
        (create_admin_app(s, _Backend()), "PUT", "/admin/v1/bundle", 1024),
    ]
    for app, method, path, limit in apps:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
            content: Any = _chunks(limit + 1) if chunked else b" " * (limit + 1)
            r = await c.request(method, path, content=content, headers=AUTH)
            doc = _envelope(r, 413, "body_too_large")
            assert doc["detail"] == {"max_bytes": limit}
            assert r.headers["connection"] == "close"
            # Exactly at the limit the body is read (and refused for what it says, not its size).
            content = _chunks(limit) if chunked else b" " * limit
            r = await c.request(method, path, content=content, headers=AUTH)
            _envelope(r, 422, "invalid_request")


async def test_the_413_comes_before_the_body_is_read(settings: RankerSettings, db_url: str) -> None:
    """A Content-Length over the limit is answered without one receive() of the body."""
    app = _public(settings, db_url)
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/v1/rank",
        "raw_path": b"/v1/rank",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("ranker", 80),
        "client": ("client", 1),
        "headers": [(b"content-length", b"100000000"), (b"content-type", b"application/json")],
    }

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"] == "body_too_large"


# Bearer scheme ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer s3cret", "s3cret"),
        ("bearer s3cret", "s3cret"),  # schemes are case-insensitive (RFC 9110 §11.1)
        ("BEARER s3cret", "s3cret"),
        ("Bearer  s3cret", "s3cret"),  # 1*SP (RFC 6750 §2.1)
        ("Bearer s3cret  ", "s3cret"),  # surrounding whitespace is not the value (RFC 9110 §5.5)
        ("  Bearer s3cret", "s3cret"),
        ("Bearer a.b-c_d~e+f/g==", "a.b-c_d~e+f/g=="),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer\ts3cret", None),
        ("Bearer s3 cret", None),
        ("Basic s3cret", None),
        ("s3cret", None),
        ("Bearers3cret", None),
        ("Bearer s3cret\u00e9", None),
        (None, None),
    ],
)
def test_bearer_token_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("bearer s3cret", 200),
        ("Bearer  s3cret ", 200),
        ("Bearer s3 cret", 401),
        ("Bearer\ts3cret", 401),
    ],
)
async def test_admin_applies_the_bearer_rule(
    admin: httpx.AsyncClient, header: str, status: int
) -> None:
    r = await admin.get("/admin/v1/state", headers={"Authorization": header})
    assert r.status_code == status, r.text


# OpenAPI documents ------------------------------------------------------------------------


async def test_public_openapi_states_the_configured_top_k_bound(
    settings: RankerSettings, db_url: str
) -> None:
    s = settings.model_copy(update={"top_k_max": 7, "top_k_default": 3})
    transport = httpx.ASGITransport(app=_public(s, db_url))
    async with httpx.AsyncClient(transport=transport, base_url="http://ranker") as c:
        doc = (await c.get("/openapi.json")).json()
        top_k = doc["components"]["schemas"]["RankRequest"]["properties"]["top_k"]
        integer = next(b for b in top_k["anyOf"] if b.get("type") == "integer")
        assert integer["maximum"] == 7
        assert "at most 7" in top_k["description"]
        assert (await c.post("/v1/rank", json=_with(top_k=7))).status_code == 503  # accepted
        r = await c.post("/v1/rank", json=_with(top_k=8))
        assert _envelope(r, 422, "invalid_request")["message"].startswith("top_k:")
        metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        assert list(metrics) == ["text/plain"]
        text = await c.get("/metrics")
        assert text.headers["content-type"].startswith("text/plain")


async def test_admin_openapi_is_served_without_the_token(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/admin/v1/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "s3cret" not in r.text


def test_settings_bound_the_limits(tmp_path: Path) -> None:
    defaults = RankerSettings(run_dir=tmp_path)
    assert defaults.public_max_body_bytes == defaults.admin_max_body_bytes == 65536
    assert defaults.header_timeout_s == 10.0
    for bad in ({"public_max_body_bytes": 0}, {"header_timeout_s": 0}, {"top_k_max": 1001}):
        with pytest.raises(ValueError):
            RankerSettings(run_dir=tmp_path, **bad)  # type: ignore[arg-type]
