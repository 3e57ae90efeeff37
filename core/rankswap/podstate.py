"""The ranker pod's state, as the ranker writes it and the operator reads it: one model each.

The ranker produces these documents (``<run_dir>/desired.json``, each worker's
``<run_dir>/workers/<slot>.json``, and ``GET /admin/v1/state``, whose OpenAPI schema is
:class:`PodState`); the operator parses the admin state with :meth:`PodState.model_validate`.
"Ready" and "converged" are defined here, once: :func:`pod_ready` and :func:`pod_converged`.

Readers ignore fields they do not know (a newer ranker may add some); error records keep every
field they carry (``extra="allow"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rankswap.comparison import Comparison

Timings = dict[str, float | int | str | bool | None]
"""Load timings and their context (seconds rounded to 0.1 ms, ids, timestamps)."""


class ArtifactState(BaseModel):
    """One artifact of a bundle as the state shows it (no local path)."""

    uri: str = Field(description="The URI the artifact was asked for (a latest/ URI stays one).")
    name: str
    version: str = Field(description="Content-derived version, YYYY-MM-DD-<8 hex>.")
    as_of: str
    created_at: str


class LocalArtifact(ArtifactState):
    """An artifact verified in the pod-local cache."""

    local_dir: str


class BundleState(BaseModel):
    """A bundle (model + features) as the state shows it."""

    bundle_id: str = Field(description="<model version>+<features version>")
    model: ArtifactState
    features: ArtifactState

    @property
    def versions(self) -> tuple[str, str]:
        return (self.model.version, self.features.version)


class ResolvedBundle(BaseModel):
    """Both artifacts of a bundle, verified in the pod-local cache."""

    model: LocalArtifact
    features: LocalArtifact


class DesiredBundle(BaseModel):
    """``<run_dir>/desired.json``: the bundle every worker must serve (written by the
    supervisor after it fetched and validated it); ``seq`` grows with each write."""

    seq: int
    request_id: int | None
    set_at: str
    bundle: ResolvedBundle


class LoadError(BaseModel):
    """A failed load: ``type`` (e.g. ``ChecksumMismatch``), a one-line ``message``, ``file``
    when one file is at fault, and where it happened (``stage``, URIs, request, times)."""

    model_config = ConfigDict(extra="allow")

    type: str
    message: str
    code: str | None = Field(default=None, description="The error code of the ranker's API.")
    file: str | None = None
    stage: str | None = None
    request_id: int | None = None
    seq: int | None = None
    bundle_id: str | None = None
    model_uri: str | None = None
    features_uri: str | None = None


class WorkerState(BaseModel):
    """One worker's truth (``<run_dir>/workers/<slot>.json``, and ``workers[]`` in the pod's
    state, where ``alive`` says whether its process still runs)."""

    slot: int
    pid: int | None = None
    alive: bool = False
    accepting: bool = Field(
        default=True,
        description="It takes connections (a restarted worker does only once it has applied "
        "the desired bundle).",
    )
    active: BundleState | None = None
    warm: list[BundleState] = Field(default_factory=list)
    applied_seq: int | None = Field(
        default=None, description="The desired.json seq it applied (or failed to apply)."
    )
    loading: str | None = Field(default=None, description="The bundle id it is loading.")
    last_error: LoadError | None = None
    last_load: Timings | None = None
    loads: int = 0
    load_failures: int = 0
    rollbacks: int = 0
    started_at: str | None = None
    updated_at: str | None = None


def pod_ready(workers: Sequence[WorkerState]) -> bool:
    """The pod's readiness (``/readyz``, ``ready`` in :class:`PodState`), defined once.

    Ready while at least one live worker serves a bundle — the desired one, or the one it
    served before while it switches to a new desired bundle (a failed switch changes nothing
    that serves) — and no live worker takes connections without a bundle. A restarted worker
    applies the desired bundle before it takes connections (``accepting``), so while it
    restarts or loads, the pod stays ready on the others.
    """
    live = [w for w in workers if w.alive]
    return any(w.active for w in live) and all(w.active for w in live if w.accepting)


def pod_converged(
    workers: Sequence[WorkerState], workers_expected: int, target_id: str | None, seq: int
) -> bool:
    """The pod has switched (what a rollout waits for), defined once: every expected worker is
    alive, serves the target bundle and has applied the current desired ``seq``."""
    return (
        target_id is not None
        and workers_expected > 0
        and len(workers) == workers_expected
        and all(
            w.alive
            and w.active is not None
            and w.active.bundle_id == target_id
            and w.applied_seq == seq
            for w in workers
        )
    )


class BundleRequestState(BaseModel):
    """One ask for a bundle: the URIs as given, who asked, when."""

    request_id: int
    model_uri: str
    features_uri: str
    source: Literal["admin", "settings", "refresher", "restart"]
    refresh_interval_s: float | None = None
    at: str


class DesiredState(BundleRequestState):
    """The last push and how it went."""

    status: Literal["pending", "loading", "loaded", "failed"]
    bundle_id: str | None = Field(default=None, description="Set once loaded.")


class TargetState(BundleState):
    """The validated bundle the workers converge on."""

    seq: int
    request_id: int | None


class RefresherState(BaseModel):
    interval_s: float
    following: list[str] = Field(description="The latest/ URIs polled.")
    last_poll_at: str | None = None
    last_error: LoadError | None = None


class PodState(BaseModel):
    """``GET /admin/v1/state``: the whole pod (see docs/RANKER.md, "Reading the state")."""

    workers_expected: int
    ready: bool = Field(description="What /readyz says (pod_ready).")
    converged: bool = Field(
        description="Every expected worker is alive and serves target (pod_converged)."
    )
    desired: DesiredState | None
    loading: BundleRequestState | None = None
    target: TargetState | None
    active: BundleState | None = Field(description="The bundle every live worker serves, or null.")
    warm: list[BundleState] = Field(default_factory=list)
    workers: list[WorkerState]
    last_error: LoadError | None = None
    last_load: Timings | None = None
    refresher: RefresherState | None = None
    supervisor_pid: int | None = None
    worker_restarts: dict[str, int] | None = None
    shadow: list[Comparison] = Field(
        default_factory=list,
        description="How the active bundle ranks a sample of live requests against the warm "
        "one, per (active, reference) pair, summed over the workers (docs/RANKER.md, "
        '"Shadow comparison").',
    )
