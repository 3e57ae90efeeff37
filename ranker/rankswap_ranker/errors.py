"""Every error the ranker reports, each with its HTTP status, mapped to responses in one place.

::

    RankerError                     (500) base; ``code`` is the machine-readable name
    ├── InternalError               (500) anything unforeseen (details only in the logs)
    ├── InvalidRequest              (422) a body that does not validate (names the field)
    ├── BadBundleRequest            (400) an admin bundle request that can never work
    │   └── URINotAllowed           (400) a URI outside the configured allowed roots
    ├── Unauthorized                (401) admin call without the right bearer token
    ├── TenantNotFound              (404) the product DB does not know the tenant
    ├── ServiceUnavailable          (503) temporarily unable; retry later
    │   ├── NoActiveBundle          (503) no bundle loaded yet in this worker
    │   └── DatabaseUnavailable     (503) the product DB cannot be reached
    └── BundleLoadFailed            (---) a bundle could not be loaded; never an HTTP answer,
        │                                 recorded in the admin state and the logs instead
        ├── BundleIncompatible      model and features do not fit (schema, widths, kinds)
        ├── ArtifactUnusable        missing, unreadable or failing its checksums (any
        │                           ``rankswap.artifacts`` error; ``type`` names which)
        ├── ModelInvalid            the ONNX file cannot be loaded or has the wrong signature
        └── SmokeScoringFailed      the loaded bundle did not score a synthetic request

Errors from other packages (``rankswap.productdb``, ``rankswap.artifacts``) are translated to
these by :func:`translate` — the only place that knows about both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from rankswap.artifacts import ArtifactError, SchemaMismatch, WrongKind


class RankerError(Exception):
    """Base class. ``status`` is the HTTP status, ``code`` a stable machine-readable name."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def body(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.detail is not None:
            doc["detail"] = self.detail
        return doc


class InternalError(RankerError):
    """A bug or an unforeseen failure; the traceback is in the logs, not in the answer."""

    code = "internal_error"


class InvalidRequest(RankerError):
    status = 422
    code = "invalid_request"


class BadBundleRequest(RankerError):
    status = 400
    code = "bad_bundle_request"


class URINotAllowed(BadBundleRequest):
    code = "uri_not_allowed"


class Unauthorized(RankerError):
    status = 401
    code = "unauthorized"


class TenantNotFound(RankerError):
    status = 404
    code = "unknown_tenant"


class ServiceUnavailable(RankerError):
    status = 503
    code = "unavailable"


class NoActiveBundle(ServiceUnavailable):
    code = "no_active_bundle"


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


class BundleLoadFailed(RankerError):
    code = "bundle_load_failed"


class BundleIncompatible(BundleLoadFailed):
    code = "bundle_incompatible"


class ArtifactUnusable(BundleLoadFailed):
    code = "artifact_unusable"


class ModelInvalid(BundleLoadFailed):
    code = "model_invalid"


class SmokeScoringFailed(BundleLoadFailed):
    code = "smoke_scoring_failed"


def translate(exc: BaseException) -> RankerError:
    """The ranker error for an exception raised by a collaborator (DB, artifact store)."""
    if isinstance(exc, RankerError):
        return exc
    # Imported here: the product DB package is a collaborator, not needed to build errors.
    from rankswap import productdb

    if isinstance(exc, productdb.UnknownTenant):
        return TenantNotFound(str(exc) or "unknown tenant")
    if isinstance(exc, productdb.DatabaseUnavailable | productdb.SchemaMissing):
        return DatabaseUnavailable(f"the product database is unavailable; retry later ({exc})")
    if isinstance(exc, SchemaMismatch | WrongKind):
        return BundleIncompatible(str(exc))
    if isinstance(exc, ArtifactError):
        return ArtifactUnusable(str(exc))
    if isinstance(exc, productdb.ProductDBError):
        return InternalError(f"product database error: {exc}")
    return InternalError(f"{type(exc).__name__}: {exc}")


def error_record(exc: BaseException) -> dict[str, Any]:
    """A JSON-able description of a failure, as kept in the admin state and logged."""
    err = translate(exc)
    record: dict[str, Any] = {"code": err.code, "type": type(exc).__name__, "message": str(exc)}
    file = getattr(exc, "file", None)
    if file is not None:
        record["file"] = file
    return record


def _validation_message(errors: Sequence[Any]) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """The one place where errors become HTTP responses."""

    async def on_ranker_error(request: Request, exc: Exception) -> JSONResponse:
        err = translate(exc)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(err, Unauthorized) else None
        if isinstance(err, ServiceUnavailable):
            headers = {"Retry-After": "1"}
        return JSONResponse(err.body(), status_code=err.status, headers=headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = json.loads(json.dumps(exc.errors(), default=str))
        for err in errors:
            err.pop("input", None)  # never echo request bodies back
            err.pop("url", None)
        err = InvalidRequest(_validation_message(errors), detail=errors)
        return JSONResponse(err.body(), status_code=err.status)

    app.add_exception_handler(RankerError, on_ranker_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
