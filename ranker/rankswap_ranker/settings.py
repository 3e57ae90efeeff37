"""The ranker's configuration: one typed class read from ``RANKSWAP_*`` environment variables.

Every field is documented here, once; ``rankswap serve --help`` and docs/RANKER.md point at
this file. Nothing reads the environment at import time: :meth:`RankerSettings.from_env` is
called by the CLI (or a test) and the instance is passed down.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rankswap.artifacts import ArtifactURI, InvalidURI, parse_uri
from rankswap.settings import from_flags, upper_level
from rankswap_ranker.schemas import TOP_K_LIMIT


class RankerSettings(BaseSettings):
    """Settings of ``rankswap serve``; each field is the variable ``RANKSWAP_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="RANKSWAP_", extra="ignore", frozen=True)

    public_host: str = "0.0.0.0"
    """Interface of the public port (rank, health, readiness, metrics)."""
    public_port: int = Field(8080, ge=0, le=65535)
    """Public port. 0 picks a free port (tests)."""
    admin_host: str = "0.0.0.0"
    """Interface of the admin port; keep it reachable only from the operator (NetworkPolicy)."""
    admin_port: int = Field(8081, ge=0, le=65535)
    """Admin port (bundle push, pod state). 0 picks a free port."""
    public_max_body_bytes: int = Field(65536, ge=1024, le=2**30)
    """Largest request body the public port reads; larger → 413 before the body is read
    (chunked bodies: as soon as they pass it). The largest valid ``/v1/rank`` body (128-char
    tenant, 2,000-char description, every character JSON-escaped) is about 26 KB."""
    admin_max_body_bytes: int = Field(65536, ge=1024, le=2**30)
    """Largest request body the admin port reads (the largest valid bundle push, two 2,048-char
    URIs every character JSON-escaped, is about 50 KB)."""
    header_timeout_s: float = Field(10.0, gt=0, le=3600)
    """A connection that has not sent its request line and headers this long after opening (or
    after starting its next request) is closed, on both ports."""
    body_timeout_s: float = Field(10.0, gt=0, le=3600)
    """A request body that has not fully arrived this long after its headers → 408, closed."""
    keep_alive_timeout_s: int = Field(5, ge=1, le=3600)
    """An idle keep-alive connection is closed after this long without a new request."""
    drain_s: float = Field(2.0, ge=0, le=300)
    """On SIGTERM each worker serves on this long, every answer with ``Connection: close``, so
    clients on kept-alive connections move to another pod between requests instead of sending
    one into a connection being closed (and a connection still routed here by lagging Service
    rules is answered); then it stops taking connections and finishes what is in flight (up to
    5 s). Runs after the pod's preStop sleep; keep preStop + drain + 5 s within
    the pod's terminationGracePeriodSeconds. 0: stop at once."""
    workers: int = Field(2, ge=1, le=64)
    """Number of uvicorn worker processes serving the public port. They share the listening
    socket, memory-map the same feature files and converge on the same bundle."""

    database_url: str = "sqlite:///work/product.db"
    """SQLAlchemy URL of the product database the candidates are read from, e.g.
    ``postgresql+psycopg://user@host/db``. Read on every request: new items rank at once."""

    allowed_roots: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Artifact roots the admin API may load from (comma-separated or JSON list of
    ``file:///abs`` / ``s3://bucket/prefix``). A URI outside all of them is refused with 400.
    Empty refuses every URI."""
    model_uri: str | None = None
    """Model artifact to load at start (optional; the operator usually pushes one)."""
    features_uri: str | None = None
    """Features artifact to load at start, together with ``model_uri``."""
    startup_file: Path | None = None
    """The operator's start-up document (``startup.json`` of the ArtifactVersion's start-up
    ConfigMap, mounted by the chart): a pod that starts with no bundle loads the last good
    bundle it names, so it becomes ready while the operator is down (see
    :mod:`rankswap_ranker.startup`). Wins over ``model_uri``/``features_uri`` when it names
    one; a missing file is fine, a bad one is logged and ignored."""

    run_dir: Path | None = None
    """Pod-local runtime folder (an ``emptyDir``): the desired bundle file, per-worker state,
    Prometheus multiprocess files. Default: ``<tmp>/rankswap-ranker-<public_port>``."""
    cache_dir: Path | None = None
    """Pod-local artifact cache (verified downloads, memory-mapped by every worker).
    Default: ``<run_dir>/cache``."""

    admin_token: SecretStr | None = None
    """Bearer token of the admin API. Prefer ``admin_token_file``."""
    admin_token_file: Path | None = None
    """File holding the admin bearer token (a mounted Kubernetes Secret); re-read when it
    changes, so a rotated Secret takes effect without a restart. Wins over ``admin_token``."""

    refresh_interval_s: float = Field(60.0, gt=0)
    """How often the refresher polls the manifest of a desired ``latest/`` URI."""
    warm_bundles: int = Field(1, ge=0, le=8)
    """Previous bundles each worker keeps loaded, so switching back to them is a pointer swap."""
    worker_poll_interval_s: float = Field(0.2, gt=0, le=10)
    """How often each worker checks the pod's desired-bundle file."""
    prefault_features: bool = True
    """Read every page of the feature tables when a bundle loads (off the request path), so no
    request waits for the disk. The pages are shared by all workers (page cache)."""
    loader_nice: int = Field(10, ge=0, le=19)
    """Niceness added to bundle-loading threads, so loads do not take CPU from requests."""
    shadow_sample_rate: float = Field(0.1, ge=0, le=1)
    """Share of live rank requests each worker scores again with its warm bundle, off the
    response path, to compare the two (docs/RANKER.md, "Shadow comparison"); 0 turns it off."""
    shadow_queue_size: int = Field(8, ge=1, le=1024)
    """Sampled requests waiting for comparison per worker; more are dropped (and counted)."""

    top_k_default: int = Field(5, ge=1)
    """``top_k`` when a request does not give one."""
    top_k_max: int = Field(100, ge=1, le=TOP_K_LIMIT)
    """Largest ``top_k`` a request may ask for (larger → 422); the OpenAPI document states it."""
    ort_intra_op_threads: int = Field(1, ge=1, le=64)
    """onnxruntime threads per session. 1 per worker process is best on small pods."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Level of the logs on stderr (also the top-level ``rankswap --log-level``)."""
    log_format: Literal["json", "text"] = "json"
    """Format of the supervisor's logs: JSON lines, or ``text`` (``--text-logs`` or the
    top-level ``rankswap --log-format``)."""
    access_log: bool = False
    """Also log every request (one JSON line each)."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return upper_level(value)

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("allowed_roots")
    @classmethod
    def _check_roots(cls, value: list[str]) -> list[str]:
        for root in value:
            try:
                parse_uri(root)
            except InvalidURI as exc:
                raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _check(self) -> RankerSettings:
        if self.top_k_default > self.top_k_max:
            raise ValueError("top_k_default must not exceed top_k_max")
        if self.public_port and self.public_port == self.admin_port:
            raise ValueError("public_port and admin_port must differ")
        if (self.model_uri is None) != (self.features_uri is None):
            raise ValueError("model_uri and features_uri are given together or not at all")
        return self

    @classmethod
    def from_env(cls, **overrides: Any) -> RankerSettings:
        """Read ``RANKSWAP_*`` variables; keyword overrides (the CLI flags given) win; ``None``
        means "not given" (``rankswap.settings.from_flags``: one line per invalid setting)."""
        return from_flags(cls, **overrides)

    # Derived values -----------------------------------------------------------------------

    @property
    def effective_run_dir(self) -> Path:
        if self.run_dir is not None:
            return self.run_dir
        return Path(tempfile.gettempdir()) / f"rankswap-ranker-{self.public_port}"

    @property
    def effective_cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.effective_run_dir / "cache"

    @property
    def allowed_root_uris(self) -> list[ArtifactURI]:
        return [parse_uri(root) for root in self.allowed_roots]

    def read_admin_token(self) -> str | None:
        """The current admin token (file first), or None when none is configured."""
        if self.admin_token_file is not None:
            try:
                token = self.admin_token_file.read_text(encoding="utf-8").strip()
            except OSError:
                return None
            return token or None
        if self.admin_token is not None:
            return self.admin_token.get_secret_value() or None
        return None

    def masked(self) -> dict[str, Any]:
        """The effective configuration as logged at start: secrets shown as ``***``."""
        doc = self.model_dump(mode="json")
        doc["admin_token"] = "***" if self.admin_token is not None else None
        doc["database_url"] = mask_url(self.database_url)
        doc["run_dir"] = str(self.effective_run_dir)
        doc["cache_dir"] = str(self.effective_cache_dir)
        return doc


def mask_url(url: str) -> str:
    """``scheme://user:secret@host/db`` → ``scheme://user:***@host/db``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user, colon, _ = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"
