"""Public routes: parse, call, serialise. The work is in :mod:`rankswap_ranker.ranking`."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from rankswap.podstate import pod_ready
from rankswap_ranker import logs
from rankswap_ranker.bundle import Bundle
from rankswap_ranker.convergence import PodView
from rankswap_ranker.errors import (
    INTERNAL_MESSAGE,
    InternalError,
    InvalidRequest,
    RankerError,
    error_response,
    translate,
    unparsable_body,
    validation_error,
)
from rankswap_ranker.metrics import RankerMetrics
from rankswap_ranker.ranking import CandidateSource, RankOutcome, RankQuery, rank, record
from rankswap_ranker.registry import BundleRegistry
from rankswap_ranker.schemas import ErrorBody, Health, RankRequest, RankResponse, Readiness
from rankswap_ranker.settings import RankerSettings
from rankswap_ranker.shadow import Shadow

if TYPE_CHECKING:
    from rankswap_ranker.spans import Tracing

log = logging.getLogger("rankswap.ranker.rank")

HEADER_BUNDLE = "X-Rankswap-Bundle"
HEADER_MODEL = "X-Rankswap-Model-Version"
HEADER_FEATURES = "X-Rankswap-Features-Version"
HEADER_WORKER = "X-Rankswap-Worker"

BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    408: {"model": ErrorBody, "description": "The body did not arrive in time; closed."},
    413: {"model": ErrorBody, "description": "The body is over the port's limit; closed."},
    422: {
        "model": ErrorBody,
        "description": "Invalid body (the message names the field), not UTF-8 JSON, or nested "
        "too deeply.",
    },
}
"""Errors of every route that takes a body, on both ports."""

_ERRORS: dict[int | str, dict[str, Any]] = {
    **BODY_ERRORS,
    404: {"model": ErrorBody, "description": "Unknown tenant."},
    503: {
        "model": ErrorBody,
        "description": "No bundle loaded yet, or the product database is unreachable.",
    },
}


class RankEndpoint:
    """``POST /v1/rank``: one pure call, :meth:`rank_request`, and two ways in.

    * :meth:`fast_path` (pure ASGI, in front of the framework's routing): a JSON body is
      parsed and validated exactly as FastAPI does (``json.loads``, then the model), errors
      become the same envelope; it skips routing, dependency solving and the per-request
      exception middleware, which cost more than the transport itself.
    * the FastAPI route (:func:`public_router`) for whatever the fast path leaves alone (an
      empty body, another content type): the framework's own answers, the same call.
    """

    def __init__(
        self,
        settings: RankerSettings,
        registry: BundleRegistry[Bundle],
        source: CandidateSource,
        metrics: RankerMetrics,
        worker_slot: int,
        shadow: Shadow | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.shadow = shadow
        self.tracing = tracing
        self.registry = registry
        self.source = source
        self.metrics = metrics
        self.worker = str(worker_slot)
        # SQLite reads are local file reads, cached between writes: ranking runs on the event
        # loop (no thread-pool hop). Each PostgreSQL read is a network round trip: ranking then
        # runs in the thread pool, so a slow query does not stall the worker's connections.
        self.inline = settings.database_url.startswith("sqlite")
        self._bundle_headers: dict[str, list[tuple[bytes, bytes]]] = {}

    def rank_request(self, body: RankRequest) -> RankOutcome:
        """Rank one request with the bundle current now (used to its end); errors become
        :class:`RankerError`; the outcome's defaults and unknowns are counted. With tracing on,
        the request's server span is told the bundle, tenant and sizes, and gets one child span
        per stage (:meth:`rankswap_ranker.spans.Tracing.rank`)."""
        if self.tracing is not None:
            return self.tracing.rank(self._rank_request, body)
        return self._rank_request(body)

    def _rank_request(self, body: RankRequest) -> RankOutcome:
        started = time.thread_time()
        try:
            return self._rank(body)
        finally:
            self.metrics.hot("rank_cpu").inc(time.thread_time() - started)

    def _rank(self, body: RankRequest) -> RankOutcome:
        settings = self.settings
        top_k = body.top_k if body.top_k is not None else settings.top_k_default
        if top_k > settings.top_k_max:
            raise InvalidRequest(
                f"top_k: must be at most {settings.top_k_max}",
                detail=[{"loc": ["body", "top_k"], "msg": f"at most {settings.top_k_max}"}],
            )
        # This request's bundle, to its end: the cohort's during a tenant canary, else the
        # active one.
        bundle = self.registry.for_tenant(body.tenant_id)
        token = logs.request_bundle.set(bundle.bundle_id)
        try:
            try:
                outcome = rank(bundle, self.source, rank_query(body, top_k))
            except Exception as exc:
                err = translate(exc)
                if isinstance(err, InternalError):
                    if self.shadow is not None:
                        self.shadow.failed(bundle)
                    log.exception("rank failed", extra={"ctx": {"tenant_id": body.tenant_id}})
                    raise InternalError(INTERNAL_MESSAGE) from exc
                raise err from exc
            record(self.metrics, outcome)
        finally:
            logs.request_bundle.reset(token)
        if self.shadow is not None:
            self.shadow.offer(outcome)  # the body is built; O(1), never blocks
        return outcome

    async def answer(self, body: RankRequest) -> RankOutcome:
        if self.inline:
            return self.rank_request(body)
        return await run_in_threadpool(self.rank_request, body)

    def headers(self, outcome: RankOutcome) -> dict[str, str]:
        ref = outcome.bundle.ref
        return {
            HEADER_BUNDLE: ref.bundle_id,
            HEADER_MODEL: ref.model.version,
            HEADER_FEATURES: ref.features.version,
            HEADER_WORKER: self.worker,
        }

    @staticmethod
    def takes(scope: Scope) -> bool:
        """A POST to /v1/rank with a JSON content type (as FastAPI reads it: ``application/json``
        or ``application/*+json``, parameters ignored)."""
        if scope["path"] != "/v1/rank" or scope["method"] != "POST":
            return False
        for name, value in scope["headers"]:
            if name == b"content-type":
                kind = value.split(b";", 1)[0].strip().lower()
                return bool(kind == b"application/json") or (
                    kind.startswith(b"application/") and kind.endswith(b"+json")
                )
        return False

    def ok_headers(self, outcome: RankOutcome) -> list[tuple[bytes, bytes]]:
        """The headers of a 200 answer (content type, length and :meth:`headers`), as sent: the
        ``X-Rankswap-*`` part encoded once per bundle, not per request."""
        key = outcome.bundle.bundle_id  # names the model and features versions
        own = self._bundle_headers.get(key)
        if own is None:
            if len(self._bundle_headers) >= 8:  # bundles come and go: keep the recent ones
                self._bundle_headers.clear()
            own = [(k.lower().encode(), v.encode()) for k, v in self.headers(outcome).items()]
            self._bundle_headers[key] = own
        return [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(outcome.body)).encode()),
            *own,
        ]

    def respond(self, raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The whole answer to a JSON ``raw`` body, ranked inline (:attr:`inline` only): status,
        headers and body exactly as :meth:`fast_path` sends them, errors included; never
        raises. The protocol's direct path (:mod:`rankswap_ranker.protocol`) writes it."""
        try:
            outcome = self.rank_request(parse_rank_request(raw))
            return 200, self.ok_headers(outcome), outcome.body
        except RankerError as err:
            failed = error_response(err)
        except Exception:  # answered here, as fast_path does
            log.exception("rank request failed")
            failed = error_response(InternalError(INTERNAL_MESSAGE))
        return failed.status_code, failed.raw_headers, bytes(failed.body)

    async def fast_path(self, raw: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a JSON ``raw`` body (the whole of it, read by :class:`BodyLimit`)."""
        try:
            outcome = await self.answer(parse_rank_request(raw))
            body = outcome.body
            headers = self.ok_headers(outcome)
        except RankerError as err:
            await error_response(err)(scope, receive, send)
            return
        except Exception:  # answered here: the fast path runs outside the framework's stack
            log.exception("rank request failed")
            await error_response(InternalError(INTERNAL_MESSAGE))(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def rank_query(body: RankRequest, top_k: int) -> RankQuery:
    """The ``rank()`` query of a validated request, asking for its ``top_k`` best."""
    ctx = body.context
    return RankQuery(
        tenant_id=body.tenant_id,
        employee_id=ctx.employee_id,
        vendor_id=ctx.vendor_id,
        description=ctx.description,
        amount=ctx.amount,
        expense_date=ctx.date,
        top_k=top_k,
    )


def parse_rank_request(raw: bytes) -> RankRequest:
    """The body as FastAPI reads a JSON body (:func:`parse_as_fastapi`), its failures as the
    errors the framework's would become (:mod:`rankswap_ranker.errors`).

    A body the model validates straight from its JSON (pydantic-core's parser, one pass, half
    the cost of ``json.loads`` and a validation of the Python objects) is taken as that: for
    these strict models both readings accept the same documents with the same values (tested
    on generated hostile bodies: types, escapes, surrogates, duplicate keys, big and non-finite
    numbers). Any other body is read again as FastAPI reads it, so every error answer, and any
    document only ``json.loads`` takes (UTF-16 JSON), stays exactly as it was."""
    try:
        return RankRequest.model_validate_json(raw)
    except ValidationError:
        return parse_as_fastapi(raw)


def parse_as_fastapi(raw: bytes) -> RankRequest:
    """The body as FastAPI reads a JSON body (``json.loads``, then the model's validation),
    its failures as :class:`~rankswap_ranker.errors.InvalidRequest`."""
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise unparsable_body(None, f"{exc.msg} at character {exc.pos}") from exc
    except (UnicodeError, RecursionError) as exc:
        raise unparsable_body(exc) from exc
    try:
        return RankRequest.model_validate(doc, from_attributes=True)  # as FastAPI validates
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise validation_error(errors) from exc


def public_router(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    source: CandidateSource,
    metrics: RankerMetrics,
    pod: PodView,
    endpoint: RankEndpoint,
) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/rank",
        response_model=RankResponse,
        responses=_ERRORS,
        summary="Rank a tenant's active items for one expense",
        tags=["rank"],
    )
    async def rank_items(body: RankRequest) -> Response:
        """Candidates are the tenant's active items, read from the product DB now. The answer
        names the bundle that produced it (also in the ``X-Rankswap-*`` headers)."""
        outcome = await endpoint.answer(body)
        return Response(
            content=outcome.body, media_type="application/json", headers=endpoint.headers(outcome)
        )

    @router.get("/healthz", summary="Liveness: the process answers", tags=["health"])
    async def healthz() -> Health:
        return Health(status="ok")

    @router.get(
        "/readyz",
        summary="Readiness: at least one worker of the pod serves its bundle",
        tags=["health"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "No worker serves a bundle (yet)."}},
    )
    def readyz() -> JSONResponse:
        """Ready while at least one live worker serves the pod's bundle (the desired one, or
        the previous one while it switches); a worker that is restarting does not make the pod
        unready. See docs/RANKER.md, "Readiness"."""
        active = registry.active
        workers = pod.worker_states()
        ready = pod_ready(workers)
        body = {
            "ready": ready,
            "bundle_id": active.bundle_id if active is not None else None,
            "workers": [
                {"slot": w.slot, "bundle_id": w.active.bundle_id if w.active else None}
                for w in workers
            ],
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get(
        "/metrics",
        summary="Prometheus metrics of the whole pod",
        tags=["health"],
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text exposition format (not JSON).",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def metrics_route() -> Response:
        payload, content_type = metrics.exposition()
        return Response(content=payload, media_type=content_type)

    return router
