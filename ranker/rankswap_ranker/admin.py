"""Admin API (its own port, for the operator): push the desired bundle, read the pod's state.

Every route needs ``Authorization: Bearer <token>``; the token comes from a file (a mounted
Kubernetes Secret, re-read when it changes) or a variable, and is compared in constant time.
The OpenAPI document (``/admin/v1/openapi.json``) is served without the token: it holds no
secret and is the same as the published docs/openapi-ranker.json.
"""

from __future__ import annotations

import hmac
import re
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rankswap.podstate import PodState
from rankswap_ranker.errors import Unauthorized, install_error_handlers
from rankswap_ranker.limits import BodyLimit
from rankswap_ranker.routes import BODY_ERRORS
from rankswap_ranker.schemas import BundleAccepted, BundleSpec, CohortSpec, ErrorBody
from rankswap_ranker.settings import RankerSettings

ADMIN_PREFIX = "/admin/v1"


class AdminBackend(Protocol):
    """What the admin API drives: the pod's coordinator (and refresher)."""

    def request_bundle(
        self,
        model_uri: str,
        features_uri: str,
        refresh_interval_s: float | None,
        cohort: CohortSpec | None = None,
    ) -> int: ...
    def state(self) -> PodState: ...


_TOKEN = re.compile(r"[\x21-\x7e]+")


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization`` header of the Bearer scheme, or None.

    RFC 6750 §2.1 (``"Bearer" 1*SP token``) with RFC 9110: the scheme is case-insensitive
    (``bearer`` is fine), one or more spaces may separate it from the token, and whitespace
    around the field value is not part of it. The token is one run of visible ASCII characters:
    a tab separator, a space inside the token, another scheme or an empty token give None.
    """
    if header is None:
        return None
    scheme, sep, rest = header.strip(" \t").partition(" ")
    token = rest.lstrip(" ")
    if not sep or scheme.lower() != "bearer" or not _TOKEN.fullmatch(token):
        return None
    return token


_ERRORS: dict[int | str, dict[str, Any]] = {
    **BODY_ERRORS,
    400: {"model": ErrorBody, "description": "A URI that is invalid or outside the allowed roots."},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token."},
    422: {"model": ErrorBody, "description": "Invalid body; the message names the field."},
}

_bearer = HTTPBearer(auto_error=False, description="The admin token (a Kubernetes Secret).")


def admin_router(settings: RankerSettings, backend: AdminBackend) -> APIRouter:
    def require_token(
        request: Request,
        # Declares the scheme in the OpenAPI document; the header is parsed by bearer_token.
        _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> None:
        expected = settings.read_admin_token()
        if expected is None:
            raise Unauthorized("no admin token is configured on this pod; admin API disabled")
        given = bearer_token(request.headers.get("authorization"))
        if given is None:
            raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("wrong bearer token")

    router = APIRouter(prefix=ADMIN_PREFIX, dependencies=[Depends(require_token)], tags=["admin"])

    @router.put(
        "/bundle",
        status_code=202,
        response_model=BundleAccepted,
        responses=_ERRORS,
        summary="Set the bundle the pod must serve (loads asynchronously)",
    )
    async def put_bundle(spec: BundleSpec) -> BundleAccepted:
        """Accepted at once; the pod fetches, verifies and validates the bundle, then every
        worker switches to it. Follow ``GET /admin/v1/state`` until ``converged`` is true and
        ``desired.request_id`` is this ``request_id`` (or ``last_error`` names it)."""
        request_id = backend.request_bundle(
            spec.model_uri, spec.features_uri, spec.refresh_interval_s, spec.cohort
        )
        return BundleAccepted(
            request_id=request_id, model_uri=spec.model_uri, features_uri=spec.features_uri
        )

    @router.get(
        "/state",
        response_model=PodState,
        responses=_ERRORS,
        summary="Desired, active and warm bundles; per-worker state; last error; timings",
    )
    def get_state() -> PodState:
        """See docs/RANKER.md, "Reading the state"."""
        return backend.state()

    return router


def create_admin_app(settings: RankerSettings, backend: AdminBackend) -> FastAPI:
    app = FastAPI(
        title="rankswap ranker — admin API",
        version="1",
        openapi_url=f"{ADMIN_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.include_router(admin_router(settings, backend))
    app.add_middleware(
        BodyLimit, max_bytes=settings.admin_max_body_bytes, timeout_s=settings.body_timeout_s
    )
    return app
