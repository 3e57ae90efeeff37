"""The operator's configuration: one typed class read from ``RANKSWAP_OPERATOR_*`` variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Settings of ``rankswap operator``; each field is the variable ``RANKSWAP_OPERATOR_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="RANKSWAP_OPERATOR_", extra="ignore", frozen=True)

    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch (JSON list). Empty: every namespace (needs cluster-wide RBAC)."""
    busy_interval_s: float = Field(1.0, gt=0, le=60)
    """Reconcile period of an ArtifactVersion while a rollout is in flight."""
    idle_interval_s: float = Field(30.0, gt=0, le=3600)
    """Reconcile period once settled: the periodic drift check."""
    retry_max_interval_s: float = Field(10.0, gt=0, le=600)
    """Longest wait between passes while the store, the admin token or the API server fails
    (the wait doubles from ``busy_interval_s`` per failed pass)."""
    pod_timeout_s: float = Field(3.0, gt=0, le=60)
    """HTTP timeout of one call to a pod's admin API."""
    watch_server_timeout_s: int = Field(60, ge=5, le=3600)
    """Server-side timeout of each watch request: a silent watch is re-opened after this long."""
    watch_client_timeout_s: int = Field(90, ge=5, le=3600)
    """Client-side timeout of each watch request, in case the server never closes it."""
    liveness_endpoint: str | None = "http://0.0.0.0:8080/healthz"
    """Where kopf serves its liveness probe (None: off)."""
    metrics_port: int | None = Field(None, ge=1, le=65535)
    """Port of the operator's Prometheus ``/metrics`` (all interfaces; None: not served)."""
    admin_token: str | None = None
    """Admin bearer token to use when a resource names no Secret (local runs, tests)."""
    history_limit: int = Field(10, ge=1, le=20)
    """Rollouts kept in ``status.history``."""
