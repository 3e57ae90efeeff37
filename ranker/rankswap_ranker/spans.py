"""The spans of ``/v1/rank`` (OpenTelemetry), imported only when tracing is on
(:mod:`rankswap_ranker.tracing` decides; a worker calls :func:`start` after it is spawned).

::

    POST /v1/rank          SERVER, child of the caller's span (W3C traceparent/tracestate)
    ├── rank.db            the stages of rankswap_ranker.ranking.rank(), from its stage timer:
    ├── rank.features      db; features + inputs; model; topk + serialise (every span costs
    ├── rank.model         the SDK tens of µs: four children, not six, cover the request)
    └── rank.serialise

:class:`TraceRequests` (pure ASGI, in front of the body limit, the fast path and the
framework's route alike) opens the server span and answers it in the ``traceresponse`` header;
:meth:`Tracing.rank` (called by ``RankEndpoint.rank_request``, the one call both ways in share)
names the bundle, tenant and sizes on it and adds the stage spans. Incoming headers are hostile
input: anything malformed or oversized is ignored (a new trace starts), never an error answer.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import context, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rankswap_ranker.errors import RankerError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from rankswap_ranker.ranking import RankOutcome
    from rankswap_ranker.schemas import RankRequest
    from rankswap_ranker.tracing import TracingConfig

SPAN_NAME = "POST /v1/rank"
MAX_TRACEPARENT = 256
"""Longer ``traceparent`` values are ignored (version 00 is 55 characters; later versions
may append fields)."""
MAX_TRACESTATE = 512
"""Longer ``tracestate`` values are dropped whole: the W3C limit a vendor must propagate."""
MAX_TRACESTATE_MEMBERS = 32
_MEMBER = re.compile(
    r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_PROPAGATOR = TraceContextTextMapPropagator()
STAGE_SPANS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rank.db", ("db",)),
    ("rank.features", ("features", "inputs")),
    ("rank.model", ("model",)),
    ("rank.serialise", ("topk", "serialise")),
)
"""The child spans and the stages of :attr:`RankOutcome.timings` each one covers, in order."""


def incoming_carrier(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The W3C trace context headers of a request that are safe to hand to the propagator:
    one ASCII ``traceparent`` of bounded size (two of them are ambiguous: both ignored), and a
    ``tracestate`` (its headers joined, as HTTP combines fields) only when every member is
    well-formed and within the W3C bounds. The propagator itself rejects a ``traceparent``
    that is not the W3C format, silently; it would log a warning for each bad ``tracestate``,
    a log line any client could make us write."""
    parents: list[bytes] = []
    states: list[bytes] = []
    for name, value in headers:
        if name == b"traceparent":
            parents.append(value)
        elif name == b"tracestate":
            states.append(value)
    if len(parents) != 1 or len(parents[0]) > MAX_TRACEPARENT or not parents[0].isascii():
        return {}
    carrier = {"traceparent": parents[0].decode("ascii")}
    state = b",".join(states)
    if state and len(state) <= MAX_TRACESTATE and state.isascii():
        members = [m.strip(" \t") for m in state.decode("ascii").split(",")]
        members = [m for m in members if m]
        if len(members) <= MAX_TRACESTATE_MEMBERS and all(_MEMBER.fullmatch(m) for m in members):
            keys = [m.partition("=")[0] for m in members]
            if len(set(keys)) == len(keys):
                carrier["tracestate"] = ",".join(members)
    return carrier


def traceresponse(span: Span) -> bytes:
    """``00-<trace id>-<span id>-<flags>`` of the server span: the ``traceresponse`` header of
    the W3C Trace Context Level 2 draft, as OpenTelemetry's instrumentations write it."""
    sc = span.get_span_context()
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}".encode()


class Tracing:
    """One worker's tracer (its provider is flushed by :meth:`shutdown`)."""

    def __init__(self, provider: TracerProvider, worker: int = 0) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("rankswap_ranker")
        self.worker = worker

    def shutdown(self) -> None:
        """Export what is still queued, then stop (the worker's last act)."""
        self.provider.shutdown()

    def server_span(self, scope: Scope) -> Span:
        parent = _PROPAGATOR.extract(incoming_carrier(scope["headers"]))
        return self.tracer.start_span(
            SPAN_NAME,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "POST",
                "http.route": "/v1/rank",
                "url.path": "/v1/rank",
                "url.scheme": str(scope.get("scheme", "http")),
                "network.protocol.version": str(scope.get("http_version", "1.1")),
                "rankswap.worker": self.worker,
            },
        )

    def rank(self, call: Callable[[RankRequest], RankOutcome], body: RankRequest) -> RankOutcome:
        """``call(body)`` (the ranking) described on the current server span: attributes,
        one child span per stage of the ranking, the error of a failed one."""
        span = trace.get_current_span()
        if not span.is_recording():  # not sampled, or called outside a traced request
            return call(body)
        span.set_attribute("rankswap.tenant_id", body.tenant_id)
        if body.top_k is not None:
            span.set_attribute("rankswap.top_k", body.top_k)
        started = time.time_ns()
        try:
            outcome = call(body)
        except RankerError as err:
            span.set_attribute("error.type", err.code)
            if err.status >= 500:
                span.record_exception(err)
                span.set_status(Status(StatusCode.ERROR, f"{err.code}: {err.message}"))
            raise
        ref = outcome.bundle.ref
        span.set_attributes(
            {
                "rankswap.bundle_id": ref.bundle_id,
                "rankswap.model_version": ref.model.version,
                "rankswap.features_version": ref.features.version,
                "rankswap.candidates": outcome.candidates,
            }
        )
        if outcome.query is not None:
            span.set_attribute("rankswap.top_k", outcome.query.top_k)
        at = started
        timings = outcome.timings
        for name, stages in STAGE_SPANS:
            end = at + int(sum(timings.get(stage, 0.0) for stage in stages) * 1e9)
            self.tracer.start_span(name, start_time=at).end(end_time=end)
            at = end
        return outcome


class TraceRequests:
    """The server span of each ``POST /v1/rank``: current while the request is answered (so
    :meth:`Tracing.rank` finds it, on the event loop or in the thread pool), given the answer's
    status, and named in the answer's ``traceresponse`` header. 5xx answers mark it an error;
    4xx do not (the OpenTelemetry HTTP conventions for a server), ``error.type`` names them."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/rank" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        span = self.tracing.server_span(scope)
        header = (b"traceresponse", traceresponse(span))
        status = 500

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        token = context.attach(trace.set_span_in_context(span))
        try:
            await self.app(scope, receive, send_traced)
        except Exception as exc:
            span.record_exception(exc)
            raise
        finally:
            context.detach(token)
            if span.is_recording():
                _answered(span, status)
            span.end()


def _answered(span: Any, status: int) -> None:
    """The answer's status on a (recording, hence SDK) server span: :meth:`Tracing.rank` may
    have named the error already (``error.type``, a status with the ranker's message)."""
    span.set_attribute("http.response.status_code", status)
    if status < 400:
        return
    if "error.type" not in (span.attributes or {}):
        span.set_attribute("error.type", str(status))
    if status >= 500 and span.status.status_code is StatusCode.UNSET:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))


def start(config: TracingConfig, worker: int) -> Tracing:
    """The tracer of one worker process, exporting as ``config`` says (batched, off the
    request path: the SDK's ``OTEL_BSP_*`` variables tune the batches)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace import sampling as s
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    root: s.Sampler
    name = config.sampler.removeprefix("parentbased_")
    if name == "always_on":
        root = s.ALWAYS_ON
    elif name == "always_off":
        root = s.ALWAYS_OFF
    else:
        root = s.TraceIdRatioBased(config.sampler_arg if config.sampler_arg is not None else 1.0)
    sampler = s.ParentBased(root) if config.sampler.startswith("parentbased_") else root
    resource = Resource.create(
        {"service.name": config.service_name, "process.pid": os.getpid(), "rankswap.worker": worker}
    )
    provider = TracerProvider(sampler=sampler, resource=resource)
    for kind in config.exporters:
        exporter: SpanExporter
        if kind == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=config.endpoint)
        else:
            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider, worker)
