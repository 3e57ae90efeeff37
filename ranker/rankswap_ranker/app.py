"""The public ASGI app of one worker, built from injected collaborators.

``create_app(settings, registry, candidate_source)`` is all a test needs to run the real app
in-process (with ``httpx.ASGITransport``); the worker process builds it the same way, adding
the pod view that makes ``/readyz`` speak for every worker.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rankswap_ranker.bundle import Bundle
from rankswap_ranker.convergence import LocalPodView, PodView
from rankswap_ranker.errors import install_error_handlers
from rankswap_ranker.limits import BodyLimit
from rankswap_ranker.metrics import RankerMetrics
from rankswap_ranker.openapi import state_top_k_bound
from rankswap_ranker.ranking import CandidateSource
from rankswap_ranker.registry import BundleRegistry
from rankswap_ranker.routes import RankEndpoint, public_router
from rankswap_ranker.settings import RankerSettings
from rankswap_ranker.shadow import Shadow

if TYPE_CHECKING:
    from rankswap_ranker.spans import Tracing

_ROUTES = frozenset({"/v1/rank", "/healthz", "/readyz", "/metrics"})


class RouteSeries:
    """The latency histogram and status counter of each route, bound once and deferred
    (``RankerMetrics.hot``). Bounded: five routes, and the statuses the app can answer."""

    def __init__(self, metrics: RankerMetrics) -> None:
        self.metrics = metrics
        self._latency: dict[str, Any] = {}
        self._count: dict[tuple[str, int], Any] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        latency = self._latency.get(route)
        if latency is None:
            latency = self._latency[route] = self.metrics.hot("request_latency", route)
        count = self._count.get((route, status))
        if count is None:
            count = self._count[route, status] = self.metrics.hot("requests", route, str(status))
        latency.observe(seconds)
        count.inc()


class RequestMetrics:
    """Latency histogram and status counter per route (pure ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp, metrics: RankerMetrics) -> None:
        self.app = app
        self.series = RouteSeries(metrics)
        self._observe = self.series.observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in _ROUTES else "other"
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._observe(route, status, time.perf_counter() - started)


class RankFastPath:
    """Hands a JSON ``POST /v1/rank`` to :meth:`RankEndpoint.fast_path`, past the framework's
    routing (pure ASGI, inside :class:`BodyLimit`, which delivers the whole body in one message);
    every other request, and an empty body, goes on to the app."""

    def __init__(self, app: ASGIApp, endpoint: RankEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.endpoint.takes(scope):
            await self.app(scope, receive, send)
            return
        message = await receive()
        raw = message.get("body", b"") if message["type"] == "http.request" else b""
        if raw:
            await self.endpoint.fast_path(raw, scope, receive, send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return message

        await self.app(scope, replay, send)


class DirectRank:
    """The public port's direct path for ``POST /v1/rank`` (:func:`rankswap_ranker.protocol.
    http_protocol`): a request whose whole JSON body came with its headers is answered by the
    protocol itself, inline, without an ASGI task or the layers above: the same answer
    (:meth:`RankEndpoint.respond`), counted in the same series as :class:`RequestMetrics`
    counts it. Only with ranking inline (SQLite), tracing off (its server span is an ASGI
    layer) and no access log (uvicorn's ASGI cycle writes it); every other request, and a body
    of unknown or over-the-limit length, takes the ASGI path (where :class:`BodyLimit` answers
    413 and 408)."""

    def __init__(self, endpoint: RankEndpoint, metrics: RankerMetrics, max_bytes: int) -> None:
        self.endpoint = endpoint
        self.max_bytes = max_bytes
        self.series = RouteSeries(metrics)

    def accepts(self, scope: Scope) -> bool:
        """A JSON ``POST /v1/rank`` (:meth:`RankEndpoint.takes`) with one ``Content-Length``,
        not zero and within the limit, and no ``Transfer-Encoding``."""
        if not self.endpoint.takes(scope):
            return False
        declared: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                if declared is not None:
                    return False
                declared = value
            elif name == b"transfer-encoding":
                return False
        return declared is not None and declared.isdigit() and 0 < int(declared) <= self.max_bytes

    def answer(self, raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body of the answer to ``raw`` (never raises), counted."""
        started = time.perf_counter()
        status = 500
        try:
            status, headers, body = self.endpoint.respond(raw)
        finally:
            self.series.observe("/v1/rank", status, time.perf_counter() - started)
        return status, headers, body


class RankerAPI(FastAPI):
    """The public app; its OpenAPI document states the configured ``top_k`` bound."""

    def __init__(self, settings: RankerSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.top_k = (settings.top_k_default, settings.top_k_max)
        self.front: list[Middleware] = []

    def add_front(self, cls: Any, **options: Any) -> None:
        """A pure ASGI layer *outside* the framework's own stack (its error, telemetry and
        body-limit middlewares, routing): each added one wraps the previous ones. Rank requests
        are answered in these layers (:class:`RankFastPath`), so they pay for nothing else."""
        self.front.append(Middleware(cls, **options))

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        for layer in self.front:
            app = layer.cls(app, *layer.args, **layer.kwargs)
        return app

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = state_top_k_bound(super().openapi(), *self.top_k)
        return self.openapi_schema


def create_app(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    candidate_source: CandidateSource,
    *,
    metrics: RankerMetrics | None = None,
    pod: PodView | None = None,
    worker_slot: int = 0,
    shadow: Shadow | None = None,
    tracing: Tracing | None = None,
) -> FastAPI:
    metrics = metrics if metrics is not None else RankerMetrics(CollectorRegistry())
    app = RankerAPI(
        settings,
        title="rankswap ranker",
        version="1",
        summary="Ranks a tenant's own expense line items with the bundle the pod serves.",
        docs_url=None,
        redoc_url=None,
        # FastAPI's own spans stay off whatever tracer provider is global: with tracing on,
        # TraceRequests makes the one server span, for the fast path and the route alike.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    endpoint = RankEndpoint(
        settings, registry, candidate_source, metrics, worker_slot, shadow, tracing
    )
    app.include_router(
        public_router(
            settings,
            registry,
            candidate_source,
            metrics,
            pod if pod is not None else LocalPodView(registry),
            endpoint,
        )
    )
    # Outside FastAPI's stack, innermost first; every request passes them, and a JSON
    # POST /v1/rank is answered by the fast path without entering the framework at all.
    app.add_front(RankFastPath, endpoint=endpoint)
    app.add_front(
        BodyLimit, max_bytes=settings.public_max_body_bytes, timeout_s=settings.body_timeout_s
    )
    if tracing is not None:  # off: nothing in the stack, the SDK never imported
        from rankswap_ranker.spans import TraceRequests

        app.add_front(TraceRequests, tracing=tracing)  # spans 413 and 408 answers too
    app.add_front(RequestMetrics, metrics=metrics)  # outermost: counts 413 and 408 too
    state: Any = app.state
    state.metrics = metrics
    state.direct = (
        DirectRank(endpoint, metrics, settings.public_max_body_bytes)
        if tracing is None and endpoint.inline and not settings.access_log
        else None
    )
    state.registry = registry
    return app
