"""Public routes: parse, call, serialise. The work is in :mod:`rankswap_ranker.ranking`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from rankswap.podstate import pod_ready
from rankswap_ranker import logs
from rankswap_ranker.bundle import Bundle
from rankswap_ranker.convergence import PodView
from rankswap_ranker.errors import InternalError, InvalidRequest, translate
from rankswap_ranker.metrics import RankerMetrics
from rankswap_ranker.ranking import CandidateSource, RankOutcome, RankQuery, rank, record
from rankswap_ranker.registry import BundleRegistry
from rankswap_ranker.schemas import ErrorBody, Health, RankRequest, RankResponse, Readiness
from rankswap_ranker.settings import RankerSettings

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


def public_router(
    settings: RankerSettings,
    registry: BundleRegistry[Bundle],
    source: CandidateSource,
    metrics: RankerMetrics,
    pod: PodView,
    worker_slot: int = 0,
) -> APIRouter:
    router = APIRouter()
    worker = str(worker_slot)

    def rank_request(body: RankRequest) -> RankOutcome:
        """Rank one request with the bundle current now (used to its end); errors become
        :class:`RankerError`; the outcome's defaults and unknowns are counted."""
        top_k = body.top_k if body.top_k is not None else settings.top_k_default
        if top_k > settings.top_k_max:
            raise InvalidRequest(
                f"top_k: must be at most {settings.top_k_max}",
                detail=[{"loc": ["body", "top_k"], "msg": f"at most {settings.top_k_max}"}],
            )
        bundle = registry.current()  # this request's bundle, to its end
        token = logs.request_bundle.set(bundle.bundle_id)
        try:
            ctx = body.context
            query = RankQuery(
                tenant_id=body.tenant_id,
                employee_id=ctx.employee_id,
                vendor_id=ctx.vendor_id,
                description=ctx.description,
                amount=ctx.amount,
                expense_date=ctx.date,
                top_k=top_k,
            )
            try:
                outcome = rank(bundle, source, query)
            except Exception as exc:
                err = translate(exc)
                if isinstance(err, InternalError):
                    log.exception("rank failed", extra={"ctx": {"tenant_id": body.tenant_id}})
                    raise InternalError("internal error; the ranker logs have the details") from exc
                raise err from exc
            record(metrics, outcome)
        finally:
            logs.request_bundle.reset(token)
        return outcome

    # SQLite reads are local file reads, cached between writes: ranking runs on the event loop
    # (no thread-pool hop). Each PostgreSQL read is a network round trip: ranking then runs in
    # the thread pool, so a slow query does not stall the worker's other connections.
    inline = settings.database_url.startswith("sqlite")

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
        if inline:
            outcome = rank_request(body)
        else:
            outcome = await run_in_threadpool(rank_request, body)
        ref = outcome.bundle.ref
        return Response(
            content=outcome.body,
            media_type="application/json",
            headers={
                HEADER_BUNDLE: ref.bundle_id,
                HEADER_MODEL: ref.model.version,
                HEADER_FEATURES: ref.features.version,
                HEADER_WORKER: worker,
            },
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
