"""``rankswap serve``: start a ranker pod's processes (supervisor + workers).

A flag given wins over its ``RANKSWAP_*`` variable of
:class:`rankswap_ranker.settings.RankerSettings`, which wins over the default.
Imports are deferred: building the ``rankswap`` parser must not import the server stack (and
prometheus_client must not be imported before the supervisor configures it).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rankswap_ranker.settings import RankerSettings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the ranker (public port: rank, health, metrics; admin port: bundle push, state)",
        description=(
            "Run a ranker pod: a supervisor (admin API, bundle coordinator, refresher) and "
            "--workers worker processes on the public port. Every option can also be set as "
            "RANKSWAP_<OPTION> (see docs/RANKER.md); flags win."
        ),
    )
    p.add_argument("--public-host", help="public interface (RANKSWAP_PUBLIC_HOST, 0.0.0.0)")
    p.add_argument("--public-port", type=int, help="public port (RANKSWAP_PUBLIC_PORT, 8080)")
    p.add_argument("--admin-host", help="admin interface (RANKSWAP_ADMIN_HOST, 0.0.0.0)")
    p.add_argument("--admin-port", type=int, help="admin port (RANKSWAP_ADMIN_PORT, 8081)")
    p.add_argument("--workers", type=int, help="worker processes (RANKSWAP_WORKERS, 2)")
    p.add_argument("--database-url", help="product DB URL (RANKSWAP_DATABASE_URL)")
    p.add_argument(
        "--allowed-roots",
        help="comma-separated artifact roots the admin API may load from (RANKSWAP_ALLOWED_ROOTS)",
    )
    p.add_argument("--model-uri", help="model artifact to load at start (RANKSWAP_MODEL_URI)")
    p.add_argument("--features-uri", help="features artifact to load at start")
    p.add_argument("--run-dir", help="pod-local runtime folder (RANKSWAP_RUN_DIR)")
    p.add_argument("--cache-dir", help="pod-local artifact cache (RANKSWAP_CACHE_DIR)")
    p.add_argument(
        "--admin-token-file", help="file holding the admin bearer token (RANKSWAP_ADMIN_TOKEN_FILE)"
    )
    p.add_argument(
        "--refresh-interval-s",
        type=float,
        help="latest/ polling interval (RANKSWAP_REFRESH_INTERVAL_S)",
    )
    p.add_argument(
        "--text-logs",
        action="store_true",
        help="plain text logs instead of JSON lines (RANKSWAP_LOG_FORMAT=text)",
    )
    p.set_defaults(func=run_serve)


_FIELDS = (
    "public_host",
    "public_port",
    "admin_host",
    "admin_port",
    "workers",
    "database_url",
    "allowed_roots",
    "model_uri",
    "features_uri",
    "run_dir",
    "cache_dir",
    "admin_token_file",
    "refresh_interval_s",
)


def settings_from_args(args: argparse.Namespace) -> RankerSettings:
    """The pod's settings: a flag given > ``RANKSWAP_*`` > default (``rankswap.settings``).

    The top-level ``--log-level`` / ``--log-format`` count only when given, so
    ``RANKSWAP_LOG_LEVEL`` (the chart's ``ranker.logLevel``) is not hidden by their defaults."""
    from rankswap_ranker.settings import RankerSettings

    overrides: dict[str, Any] = {name: getattr(args, name, None) for name in _FIELDS}
    overrides["log_level"] = getattr(args, "log_level", None)
    overrides["log_format"] = "text" if args.text_logs else getattr(args, "log_format", None)
    return RankerSettings.from_env(**overrides)


def run_serve(args: argparse.Namespace) -> int:
    import os

    from rankswap_ranker.server import serve
    from rankswap_ranker.tracing import TracingConfig

    settings = settings_from_args(args)
    tracing = TracingConfig.from_env(os.environ)  # the standard OTEL_* variables; None: off
    return serve(settings, json_logs=settings.log_format == "json", tracing=tracing)
