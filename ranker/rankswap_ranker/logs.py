"""Structured logs of the ranker, on top of :mod:`rankswap.logs` (JSON lines by ``json.dumps``).

Every line carries the process role (``supervisor`` / ``worker``), the worker slot, and the
bundle: the one the current request is served with (a ContextVar set by the rank route) or,
outside a request, the bundle active in this process. Call sites pass fields with
:func:`event`, never by formatting them into the message.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from rankswap.logs import configure_logging

request_bundle: ContextVar[str | None] = ContextVar("rankswap_request_bundle", default=None)
"""Bundle id of the request being served in this context."""

_process: dict[str, Any] = {"role": "ranker", "worker": None, "bundle_id": None}


def set_process(role: str, worker: int | None = None) -> None:
    """Name this process in every log line: ``supervisor`` or ``worker`` (with its slot)."""
    _process["role"] = role
    _process["worker"] = worker


def set_active_bundle(bundle_id: str | None) -> None:
    """The bundle active in this process, logged on lines outside a request."""
    _process["bundle_id"] = bundle_id


class _ProcessFields(logging.Filter):
    """Adds role, worker and bundle to each record's ``ctx`` (merged into the JSON object)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields: dict[str, Any] = {"role": _process["role"]}
        if _process["worker"] is not None:
            fields["worker"] = _process["worker"]
        bundle = request_bundle.get() or _process["bundle_id"]
        if bundle is not None:
            fields["bundle_id"] = bundle
        own = getattr(record, "ctx", None)
        record.ctx = {**fields, **own} if isinstance(own, dict) else fields
        return True


def configure(level: str, *, json_lines: bool = True) -> None:
    """Route every logger (ours, uvicorn's) to one stderr handler, JSON lines by default."""
    configure_logging(level, json_lines=json_lines)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ProcessFields())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("botocore").setLevel(logging.WARNING)


def event(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """Log ``msg`` with structured ``fields`` (JSON keys, not formatted into the text)."""
    logger.log(level, msg, extra={"ctx": fields})
