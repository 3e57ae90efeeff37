"""Every error the ranker reports, each with its HTTP status, mapped to responses in one place.

::

    RankerError                     (500) base; ``code`` is the machine-readable name
    ├── InternalError               (500) anything unforeseen (details only in the logs)
    ├── InvalidRequest              (422) a body that does not validate (names the field),
    │                                     is not UTF-8 JSON, or is nested too deeply
    ├── BadBundleRequest            (400) an admin bundle request that can never work
    │   └── URINotAllowed           (400) a URI outside the configured allowed roots
    ├── Unauthorized                (401) admin call without the right bearer token
    ├── NotFound                    (404) no such path
    │   └── TenantNotFound          (404) the product DB does not know the tenant
    ├── MethodNotAllowed            (405) the path exists, the method does not (``Allow`` lists)
    ├── RequestTimeout              (408) the body did not arrive in time (connection closed)
    ├── BodyTooLarge                (413) the body is over the port's limit (connection closed)
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
these by :func:`translate` — the only place that knows about both. Every error answer of both
ports, including the framework's own (404, 405, unparsable bodies, unhandled exceptions), is the
one envelope ``{"error", "message", "detail"?}`` (:class:`rankswap_ranker.schemas.ErrorBody`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

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


INTERNAL_MESSAGE = "internal error; the ranker logs have the details"
"""What a 500 says: the traceback is in the logs, never in the answer."""


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


class NotFound(RankerError):
    status = 404
    code = "not_found"


class TenantNotFound(NotFound):
    code = "unknown_tenant"


class MethodNotAllowed(RankerError):
    status = 405
    code = "method_not_allowed"


class RequestTimeout(RankerError):
    status = 408
    code = "request_timeout"


class BodyTooLarge(RankerError):
    status = 413
    code = "body_too_large"


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


def validation_error(errors: Sequence[Any]) -> InvalidRequest:
    """422 from pydantic's errors: location, message and type only (never the input: it can be
    the whole hostile body, nested a thousand deep)."""
    detail = []
    for err in errors:
        if err.get("type") == "json_invalid":  # FastAPI's JSONDecodeError: loc is (body, pos)
            pos = next((p for p in err.get("loc", ()) if isinstance(p, int)), None)
            reason = str((err.get("ctx") or {}).get("error", "invalid JSON"))
            where = f" at character {pos}" if pos is not None else ""
            return unparsable_body(None, f"{reason}{where}")
        item: dict[str, Any] = {
            "loc": [p if isinstance(p, int) else str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "invalid")),
            "type": str(err.get("type", "invalid")),
        }
        ctx = err.get("ctx")
        if isinstance(ctx, dict):
            item["ctx"] = {str(k): str(v) for k, v in ctx.items()}
        detail.append(item)
    return InvalidRequest(_validation_message(detail), detail=detail)


def unparsable_body(cause: BaseException | None, why: str = "") -> InvalidRequest:
    """422 for a body that is not a JSON document (the framework's own answer is a bare 400
    for text that is not UTF-8 or nested too deeply for its parser)."""
    if isinstance(cause, UnicodeError):
        reason = "not UTF-8 text"
    elif isinstance(cause, RecursionError):
        reason = "JSON nested too deeply"
    else:
        reason = f"not a JSON document ({why})" if why else "not a JSON document"
    return InvalidRequest(
        f"body: {reason}", detail=[{"loc": ["body"], "msg": reason, "type": "json_invalid"}]
    )


def http_error(status: int, message: str, cause: BaseException | None) -> RankerError:
    """The ranker error for one of the framework's own HTTP errors (routing, body parsing)."""
    if status == 404:
        return NotFound("no such path; the OpenAPI document of this port lists them")
    if status == 405:
        return MethodNotAllowed("method not allowed on this path; the Allow header lists them")
    if status == 400:
        return unparsable_body(cause)
    if status == 413:
        return BodyTooLarge(message)
    if status < 500:
        return InvalidRequest(message)
    return InternalError(INTERNAL_MESSAGE)


def error_response(err: RankerError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one envelope, with the headers the status calls for."""
    extra = dict(headers or {})
    if isinstance(err, Unauthorized):
        extra["WWW-Authenticate"] = "Bearer"
    if isinstance(err, ServiceUnavailable):
        extra["Retry-After"] = "1"
    if isinstance(err, BodyTooLarge | RequestTimeout):
        extra["Connection"] = "close"  # the rest of the body is never read
    return JSONResponse(err.body(), status_code=err.status, headers=extra or None)


def install_error_handlers(app: FastAPI) -> None:
    """The one place where errors become HTTP responses."""

    async def on_ranker_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(translate(exc))

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(validation_error(exc.errors()))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        allow = {"Allow": exc.headers["Allow"]} if exc.headers and "Allow" in exc.headers else None
        return error_response(http_error(exc.status_code, str(exc.detail), exc.__cause__), allow)

    async def on_unhandled(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback and re-raises after this answer.
        return error_response(InternalError(INTERNAL_MESSAGE))

    app.add_exception_handler(RankerError, on_ranker_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unhandled)
