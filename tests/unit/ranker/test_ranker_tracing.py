"""Traces of /v1/rank (issue 13, item 4): the real app in-process with the SDK's in-memory
exporter — span names, parent/child structure, attributes, the caller's traceparent honoured,
hostile headers ignored, errors on the span, both ways in (the fast path and the route), and
nothing at all when tracing is off."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode

from rankswap.settings import SettingsError
from rankswap_ranker import spans
from rankswap_ranker.app import RankFastPath, create_app
from rankswap_ranker.bundle import Bundle
from rankswap_ranker.candidates import LazyProductDB
from rankswap_ranker.registry import BundleRegistry
from rankswap_ranker.settings import RankerSettings
from rankswap_ranker.spans import Tracing
from rankswap_ranker.tracing import TracingConfig

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

BODY: dict[str, Any] = {
    "tenant_id": "acme",
    "context": {"employee_id": 1, "description": "taxi", "amount": 2480, "date": "2026-11-27"},
}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
STAGES = ["rank.db", "rank.features", "rank.model", "rank.serialise"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registry(loaded: Bundle) -> BundleRegistry[Bundle]:
    reg: BundleRegistry[Bundle] = BundleRegistry(1)
    reg.activate(loaded)
    return reg


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Iterator[Tracing]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    t = Tracing(provider, worker=3)
    yield t
    t.shutdown()


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ranker")


def _app(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    db_url: str,
    tracing: Tracing | None,
    way: str = "fast",
) -> FastAPI:
    app = create_app(settings, registry, LazyProductDB(db_url), tracing=tracing)
    if way == "route":  # the framework's route alone, as the parity test of test_ranker_app
        app.user_middleware = [m for m in app.user_middleware if m.cls is not RankFastPath]  # type: ignore[comparison-overlap]
    return app


def _tree(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one server span of the request, and its children in start order."""
    done = exporter.get_finished_spans()
    (server,) = [s for s in done if s.kind is SpanKind.SERVER]
    children = sorted(
        (s for s in done if s.parent is not None and s.parent.span_id == server.context.span_id),
        key=lambda s: s.start_time or 0,
    )
    assert len(done) == 1 + len(children), [s.name for s in done]
    return server, children


@pytest.mark.parametrize("way", ["fast", "route"])
@pytest.mark.parametrize("database_url", ["sqlite:///product.db", "postgresql+psycopg://db/p"])
async def test_one_server_span_child_of_the_callers_with_a_span_per_stage(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    db_url: str,
    tracing: Tracing,
    exporter: InMemorySpanExporter,
    loaded: Bundle,
    way: str,
    database_url: str,
) -> None:
    """On the event loop (SQLite) and in the thread pool (PostgreSQL), past the framework's
    routing and through it."""
    settings = settings.model_copy(update={"database_url": database_url})
    async with _client(_app(settings, registry, db_url, tracing, way)) as c:
        r = await c.post(
            "/v1/rank",
            json={**BODY, "top_k": 3},
            headers={"traceparent": TRACEPARENT, "tracestate": "vendor=abc,other@sys=x1"},
        )
    assert r.status_code == 200, r.text
    server, children = _tree(exporter)
    assert server.name == "POST /v1/rank"
    assert server.context.trace_id == int(TRACE_ID, 16)
    assert server.parent is not None and server.parent.span_id == int(PARENT_ID, 16)
    assert server.parent.is_remote
    assert dict(server.context.trace_state) == {"vendor": "abc", "other@sys": "x1"}
    attrs = dict(server.attributes or {})
    assert attrs["rankswap.bundle_id"] == loaded.bundle_id
    assert attrs["rankswap.model_version"] == loaded.ref.model.version
    assert attrs["rankswap.features_version"] == loaded.ref.features.version
    assert attrs["rankswap.tenant_id"] == "acme"
    assert (attrs["rankswap.candidates"], attrs["rankswap.top_k"]) == (50, 3)
    assert attrs["rankswap.worker"] == 3
    assert attrs["http.response.status_code"] == 200
    assert attrs["http.route"] == "/v1/rank"
    assert "error.type" not in attrs
    assert server.status.status_code is StatusCode.UNSET
    assert [s.name for s in children] == STAGES
    assert all(s.context.trace_id == server.context.trace_id for s in children)
    assert server.start_time is not None and server.end_time is not None
    for a, b in itertools.pairwise(children):
        assert a.end_time == b.start_time  # the stages follow each other
    assert server.start_time <= (children[0].start_time or 0)
    assert (children[-1].end_time or 0) <= server.end_time
    span_id = f"{server.context.span_id:016x}"
    assert r.headers["traceresponse"] == f"00-{TRACE_ID}-{span_id}-01"


async def test_without_a_traceparent_the_request_starts_a_trace(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    db_url: str,
    tracing: Tracing,
    exporter: InMemorySpanExporter,
) -> None:
    async with _client(_app(settings, registry, db_url, tracing)) as c:
        r = await c.post("/v1/rank", json=BODY)
        assert (await c.get("/healthz")).status_code == 200  # only /v1/rank is traced
    server, children = _tree(exporter)
    assert server.parent is None and len(children) == len(STAGES)
    flags = int(server.context.trace_flags)
    assert flags & 1  # sampled (the SDK also sets Level 2's "random" flag on a new trace id)
    assert r.headers["traceresponse"] == (
        f"00-{server.context.trace_id:032x}-{server.context.span_id:016x}-{flags:02x}"
    )


HOSTILE_TRACEPARENTS: list[list[tuple[bytes, bytes]]] = [
    [(b"traceparent", b"garbage")],
    [(b"traceparent", f"ff-{TRACE_ID}-{PARENT_ID}-01".encode())],  # version ff is invalid
    [(b"traceparent", f"00-{'0' * 32}-{PARENT_ID}-01".encode())],  # all-zero trace id
    [(b"traceparent", f"00-{TRACE_ID}-{'0' * 16}-01".encode())],  # all-zero parent id
    [(b"traceparent", f"00-{TRACE_ID.upper()}-{PARENT_ID}-01".encode())],
    [(b"traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01-extra".encode())],  # 00 has 4 fields
    [(b"traceparent", f"01-{TRACE_ID}-{PARENT_ID}-01-".encode() + b"x" * 100_000)],
    [(b"traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01".encode().replace(b"4b", b"\xc3\xa9"))],
    [(b"traceparent", TRACEPARENT.encode()), (b"traceparent", TRACEPARENT.encode())],
    [(b"traceparent", b"")],
]


@pytest.mark.parametrize("way", ["fast", "route"])
async def test_malformed_or_oversized_traceparent_is_ignored_a_new_trace_starts(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    db_url: str,
    tracing: Tracing,
    exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    way: str,
) -> None:
    async with _client(_app(settings, registry, db_url, None, way)) as c:
        plain = await c.post("/v1/rank", json=BODY)
    async with _client(_app(settings, registry, db_url, tracing, way)) as c:
        for headers in HOSTILE_TRACEPARENTS:
            exporter.clear()
            caplog.clear()
            with caplog.at_level(logging.DEBUG):
                r = await c.post("/v1/rank", json=BODY, headers=headers)
            assert (r.status_code, r.content) == (200, plain.content), headers
            server, children = _tree(exporter)
            assert server.parent is None, headers
            assert server.context.trace_id != int(TRACE_ID, 16)
            assert len(children) == len(STAGES)
            assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    "tracestate",
    [
        "vendor=abc,garbage",  # a member without '='
        "Vendor=abc",  # keys are lower case
        "a=b," * 40,  # more than 32 members
        "k=" + "v" * 600,  # over 512 characters
        "a=1,a=2",  # a key twice
        "k=va\u00e9",  # not ASCII
        "k=a=b",  # '=' is not a value character
    ],
)
async def test_a_bad_tracestate_is_dropped_whole_the_traceparent_still_counts(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    db_url: str,
    tracing: Tracing,
    exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    tracestate: str,
) -> None:
    async with _client(_app(settings, registry, db_url, tracing)) as c:
        with caplog.at_level(logging.DEBUG):
            r = await c.post(
                "/v1/rank",
                json=BODY,
                headers=[
                    (b"traceparent", TRACEPARENT.encode()),
                    (b"tracestate", tracestate.encode()),
                ],
            )
    assert r.status_code == 200
    server, _ = _tree(exporter)
    assert server.context.trace_id == int(TRACE_ID, 16)
    assert dict(server.context.trace_state) == {}
    assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING]


def test_incoming_carrier_joins_tracestate_headers_and_keeps_well_formed_members() -> None:
    carrier = spans.incoming_carrier(
        [
            (b"traceparent", TRACEPARENT.encode()),
            (b"tracestate", b"a=1, b=2"),
            (b"tracestate", b"tenant@vendor=x"),
        ]
    )
    assert carrier == {"traceparent": TRACEPARENT, "tracestate": "a=1,b=2,tenant@vendor=x"}
    assert spans.incoming_carrier([(b"tracestate", b"a=1")]) == {}


@pytest.mark.parametrize("way", ["fast", "route"])
async def test_errors_are_on_the_server_span_with_their_status(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    db_url: str,
    tracing: Tracing,
    exporter: InMemorySpanExporter,
    way: str,
) -> None:
    async with _client(_app(settings, registry, db_url, tracing, way)) as c:
        r = await c.post("/v1/rank", json={**BODY, "tenant_id": "nobody"})
        assert r.status_code == 404
        server, children = _tree(exporter)
        attrs = dict(server.attributes or {})
        assert (attrs["http.response.status_code"], attrs["error.type"]) == (404, "unknown_tenant")
        assert attrs["rankswap.tenant_id"] == "nobody"
        assert server.status.status_code is StatusCode.UNSET  # a client's error (HTTP semconv)
        assert children == [] and "traceresponse" in r.headers

        exporter.clear()
        r = await c.post("/v1/rank", json={**BODY, "top_k": "many"})
        assert r.status_code == 422
        server, _ = _tree(exporter)
        assert dict(server.attributes or {})["error.type"] == "422"
        assert server.status.status_code is StatusCode.UNSET

    exporter.clear()
    empty: BundleRegistry[Bundle] = BundleRegistry(1)
    async with _client(_app(settings, empty, db_url, tracing, way)) as c:
        r = await c.post("/v1/rank", json=BODY)
    assert r.status_code == 503
    server, _ = _tree(exporter)
    attrs = dict(server.attributes or {})
    assert (attrs["http.response.status_code"], attrs["error.type"]) == (503, "no_active_bundle")
    assert server.status.status_code is StatusCode.ERROR
    assert server.status.description is not None
    assert server.status.description.startswith("no_active_bundle: ")
    (event,) = server.events
    assert event.name == "exception"
    assert str(dict(event.attributes or {})["exception.type"]).endswith("NoActiveBundle")


async def test_a_413_of_the_body_limit_is_on_a_span_too(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    db_url: str,
    tracing: Tracing,
    exporter: InMemorySpanExporter,
) -> None:
    raw = b'{"tenant_id": "' + b"a" * settings.public_max_body_bytes + b'"}'
    async with _client(_app(settings, registry, db_url, tracing)) as c:
        r = await c.post("/v1/rank", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 413
    server, _ = _tree(exporter)
    assert dict(server.attributes or {})["http.response.status_code"] == 413


async def test_the_fast_path_and_the_route_answer_alike_with_tracing_on(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    db_url: str,
    tracing: Tracing,
    exporter: InMemorySpanExporter,
) -> None:
    """Same status, body and headers but the span id; the same span tree."""
    async with (
        _client(_app(settings, registry, db_url, tracing, "fast")) as f,
        _client(_app(settings, registry, db_url, tracing, "route")) as p,
    ):
        for body in (BODY, {**BODY, "tenant_id": "nobody"}, {**BODY, "top_k": 0}):
            trees = []
            answers = []
            for c in (f, p):
                exporter.clear()
                r = await c.post("/v1/rank", json=body, headers={"traceparent": TRACEPARENT})
                server, children = _tree(exporter)
                attrs = dict(server.attributes or {})
                trees.append((server.name, attrs, [s.name for s in children]))
                headers = dict(r.headers)
                assert headers.pop("traceresponse").startswith(f"00-{TRACE_ID}-")
                answers.append((r.status_code, r.content, headers))
            assert answers[0] == answers[1], body
            assert trees[0] == trees[1], body


async def test_a_caller_that_does_not_sample_gets_no_spans_exported(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    db_url: str,
    exporter: InMemorySpanExporter,
) -> None:
    """The default sampler follows the caller; a ratio of 0 samples no root request."""
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with _client(_app(settings, registry, db_url, Tracing(provider))) as c:
        a = await c.post("/v1/rank", json=BODY, headers={"traceparent": TRACEPARENT[:-2] + "00"})
        b = await c.post("/v1/rank", json=BODY)
        s = await c.post("/v1/rank", json=BODY, headers={"traceparent": TRACEPARENT})
    assert (a.status_code, b.status_code, s.status_code) == (200, 200, 200)
    assert a.headers["traceresponse"].startswith(f"00-{TRACE_ID}-")
    assert a.headers["traceresponse"].endswith("-00")
    server, children = _tree(exporter)  # only the sampled caller's request
    assert server.context.trace_id == int(TRACE_ID, 16) and len(children) == len(STAGES)
    provider.shutdown()


OFF_PROGRAM = """
import json, sys
import anyio, httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rankswap_ranker import bundle as bundles
from rankswap_ranker.app import create_app
from rankswap_ranker.candidates import LazyProductDB
from rankswap_ranker.registry import BundleRegistry
from rankswap_ranker.settings import RankerSettings
from rankswap_ranker.tracing import TracingConfig

args = json.loads(sys.argv[1])
assert TracingConfig.from_env({}) is None
exporter = InMemorySpanExporter()
if args["global_provider"]:
    # a provider set by someone else (auto-instrumentation): FastAPI's own spans stay off too
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
registry = BundleRegistry(1)
from pathlib import Path
registry.activate(bundles.load(bundles.resolve(args["model"], args["features"], Path(args["cache"]))))
app = create_app(RankerSettings(run_dir=args["run"]), registry, LazyProductDB(args["db"]))

async def main():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as c:
        r = await c.post("/v1/rank", json=args["body"], headers={"traceparent": args["tp"]})
    return r.status_code, "traceresponse" in r.headers

status, header = anyio.run(main)
print(json.dumps({
    "status": status,
    "traceresponse": header,
    "spans": len(exporter.get_finished_spans()),
    "modules": sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "rankswap_ranker.spans"))),
}))
"""


@pytest.mark.parametrize("global_provider", [False, True])
def test_off_by_default_no_spans_no_sdk_imported(
    published: Any, cache_dir: Any, db_url: str, tmp_path: Any, global_provider: bool
) -> None:
    """A fresh interpreter: the app built and answering with no tracing configured never
    imports the SDK nor rankswap_ranker.spans, writes no traceresponse, and makes no span,
    even with a global tracer provider set (FastAPI's native telemetry stays off)."""
    args = {
        "model": published.model_uri,
        "features": published.features_uri,
        "cache": str(cache_dir),
        "db": db_url,
        "run": str(tmp_path / "run"),
        "body": BODY,
        "tp": TRACEPARENT,
        "global_provider": global_provider,
    }
    program = OFF_PROGRAM
    if not global_provider:  # import the SDK only where the test itself needs it
        program = program.replace(
            "from opentelemetry.sdk.trace import TracerProvider\n", ""
        ).replace("from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n", "")
        program = program.replace(
            "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n",
            "",
        ).replace("exporter = InMemorySpanExporter()", "exporter = None")
        program = program.replace('"spans": len(exporter.get_finished_spans())', '"spans": 0')
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(program), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["status"] == 200 and out["traceresponse"] is False and out["spans"] == 0
    if not global_provider:
        assert out["modules"] == []


# The OTEL_* variables ----------------------------------------------------------------------


def test_tracing_is_off_unless_an_exporter_or_endpoint_is_configured() -> None:
    assert TracingConfig.from_env({}) is None
    assert TracingConfig.from_env({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "?"}) is None
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert TracingConfig.from_env({**on, "OTEL_TRACES_EXPORTER": "none"}) is None
    assert TracingConfig.from_env({**on, "OTEL_SDK_DISABLED": "true"}) is None
    c = TracingConfig.from_env(on)
    assert c == TracingConfig(
        ("otlp",),
        "http://collector:4318/v1/traces",
        "parentbased_always_on",
        None,
        "rankswap-ranker",
    )
    c = TracingConfig.from_env({"OTEL_TRACES_EXPORTER": "otlp"})
    assert c is not None and c.endpoint == "http://localhost:4318/v1/traces"
    c = TracingConfig.from_env(
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c.example/otlp/traces",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.05",
            "OTEL_SERVICE_NAME": "ranker-eu",
        }
    )
    assert c == TracingConfig(
        ("otlp",), "https://c.example/otlp/traces", "parentbased_traceidratio", 0.05, "ranker-eu"
    )
    c = TracingConfig.from_env({"OTEL_TRACES_EXPORTER": "console"})
    assert c is not None and (c.exporters, c.endpoint) == (("console",), None)
    c = TracingConfig.from_env(
        {"OTEL_TRACES_EXPORTER": "otlp, console", "OTEL_TRACES_SAMPLER": "traceidratio"}
    )
    assert c is not None and c.exporters == ("otlp", "console") and c.sampler_arg == 1.0


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp,none"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": ","}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "xray"}, "OTEL_TRACES_SAMPLER"),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_TRACES_SAMPLER": "traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "1.5",
            },
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_TRACES_SAMPLER": "traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "nan",
            },
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_TRACES_SAMPLER": "traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "half",
            },
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:99999"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://c/x"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "s" * 300}, "OTEL_SERVICE_NAME"),
    ],
)
def test_a_bad_otel_variable_is_one_line_naming_it(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        TracingConfig.from_env(env)
    message = str(caught.value)
    assert message.startswith(f"{variable}: ") and "\n" not in message and len(message) < 200


@pytest.mark.parametrize(
    ("sampler", "arg", "description"),
    [
        ("parentbased_always_on", None, "ParentBased{root:AlwaysOnSampler"),
        ("parentbased_traceidratio", 0.25, "ParentBased{root:TraceIdRatioBased{0.25}"),
        ("always_off", None, "AlwaysOffSampler"),
        ("traceidratio", 0.5, "TraceIdRatioBased{0.5}"),
    ],
)
def test_start_builds_the_workers_provider_as_configured(
    sampler: str, arg: float | None, description: str
) -> None:
    config = TracingConfig(("otlp",), "http://127.0.0.1:9/v1/traces", sampler, arg, "svc")
    t = spans.start(config, worker=2)
    try:
        assert t.provider.sampler.get_description().startswith(description)
        attrs = dict(t.provider.resource.attributes)
        assert (attrs["service.name"], attrs["rankswap.worker"]) == ("svc", 2)
        assert t.worker == 2
    finally:
        t.shutdown()  # nothing queued: returns at once
