"""Whether and how the ranker traces ``/v1/rank``: read once from the standard ``OTEL_*``
variables, at start (docs/INSTALL.md, "Tracing").

Tracing is **off** unless an exporter is configured: ``OTEL_TRACES_EXPORTER`` (``otlp``,
``console``, or both comma-separated) or an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``). ``OTEL_TRACES_EXPORTER=none`` or
``OTEL_SDK_DISABLED=true`` turn it off whatever else is set. Off, this module is all the ranker
reads: the OpenTelemetry SDK is never imported and the request path pays one ``is None`` test.
On, each worker process builds its own tracer provider after it starts
(:func:`rankswap_ranker.spans.start`) and flushes it when it stops.

This module is pure (no OpenTelemetry import): the supervisor validates the variables before it
starts any worker, so a bad value exits 2 with one line naming the variable
(:class:`rankswap.settings.SettingsError`), like every ``RANKSWAP_*`` setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rankswap.settings import SettingsError

DEFAULT_SERVICE_NAME = "rankswap-ranker"
DEFAULT_ENDPOINT = "http://localhost:4318"
"""The OTLP/HTTP default of the OpenTelemetry specification (a collector on the same host)."""
EXPORTERS = frozenset({"otlp", "console"})
SAMPLERS = frozenset(
    {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
)
DEFAULT_SAMPLER = "parentbased_always_on"
"""The specification's default: follow the caller's decision, sample every root request."""
_TRUE = frozenset({"true", "1", "yes", "on"})


@dataclass(frozen=True)
class TracingConfig:
    """Tracing as the worker processes set it up (picklable: passed to each spawned worker)."""

    exporters: tuple[str, ...]
    """``otlp`` (OTLP over HTTP/protobuf), ``console`` (spans as JSON on stdout, for debugging)."""
    endpoint: str | None
    """The URL the OTLP exporter posts spans to (``.../v1/traces``); None without ``otlp``."""
    sampler: str
    sampler_arg: float | None
    """The ratio of the ``*traceidratio`` samplers (``OTEL_TRACES_SAMPLER_ARG``, default 1.0)."""
    service_name: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TracingConfig | None:
        """The configuration the variables in ``environ`` state, or None when tracing is off.

        The exporter's other variables (``OTEL_EXPORTER_OTLP_HEADERS``, ``_TIMEOUT``,
        ``_COMPRESSION``, ``_CERTIFICATE``), ``OTEL_RESOURCE_ATTRIBUTES`` and the batch
        processor's ``OTEL_BSP_*`` are read by the OpenTelemetry SDK itself."""

        def get(name: str) -> str:
            return environ.get(name, "").strip()

        if get("OTEL_SDK_DISABLED").lower() in _TRUE:
            return None
        endpoint_given = bool(
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or get("OTEL_EXPORTER_OTLP_ENDPOINT")
        )
        named = get("OTEL_TRACES_EXPORTER").lower()
        if not named:
            if not endpoint_given:
                return None
            named = "otlp"
        exporters = tuple(dict.fromkeys(e.strip() for e in named.split(",") if e.strip()))
        if exporters == ("none",):
            return None
        unknown = [e for e in exporters if e not in EXPORTERS]
        if unknown or not exporters:
            raise SettingsError(
                f"OTEL_TRACES_EXPORTER: {named!r}: the ranker exports with "
                f"{', '.join(sorted(EXPORTERS))} or none"
            )
        endpoint = _traces_endpoint(environ) if "otlp" in exporters else None
        sampler = get("OTEL_TRACES_SAMPLER").lower() or DEFAULT_SAMPLER
        if sampler not in SAMPLERS:
            raise SettingsError(
                f"OTEL_TRACES_SAMPLER: {sampler!r} is not one of {', '.join(sorted(SAMPLERS))}"
            )
        sampler_arg: float | None = None
        if sampler.endswith("traceidratio"):
            text = get("OTEL_TRACES_SAMPLER_ARG") or "1.0"
            try:
                sampler_arg = float(text)
            except ValueError:
                sampler_arg = -1.0
            if not 0.0 <= sampler_arg <= 1.0:  # also NaN
                raise SettingsError(
                    f"OTEL_TRACES_SAMPLER_ARG: {text[:40]!r} is not a ratio between 0 and 1"
                )
        service = get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
        if len(service) > 255:
            raise SettingsError("OTEL_SERVICE_NAME: longer than 255 characters")
        return cls(exporters, endpoint, sampler, sampler_arg, service)

    def public(self) -> dict[str, Any]:
        """As logged at start (the exporter's headers, which may hold credentials, never are)."""
        return {
            "exporters": list(self.exporters),
            "endpoint": self.endpoint,
            "sampler": self.sampler,
            "sampler_arg": self.sampler_arg,
            "service_name": self.service_name,
        }


def _traces_endpoint(environ: Mapping[str, str]) -> str:
    """Where OTLP/HTTP spans go, by the specification's rules: the signal's own variable as
    given, else ``<OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces``. Only HTTP/protobuf is installed
    in the ranker image (no gRPC: grpcio would add about 30 MB)."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(name, "").strip()
        if protocol:
            if protocol != "http/protobuf":
                raise SettingsError(
                    f"{name}: {protocol[:40]!r}: the ranker exports OTLP over http/protobuf only "
                    "(a collector's port 4318)"
                )
            break
    own = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    name = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" if own else "OTEL_EXPORTER_OTLP_ENDPOINT"
    base = own or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    try:
        parts = urlsplit(base)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port or bracketed host
        valid = False
    if not valid or len(base) > 2048:
        raise SettingsError(f"{name}: {base[:80]!r} is not an http:// or https:// URL")
    if own:
        return own
    return base.rstrip("/") + "/v1/traces"
