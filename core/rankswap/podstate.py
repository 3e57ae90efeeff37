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

from rankswap.cohorts import CohortAssignment
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


class DesiredCohort(BaseModel):
    """The cohort part of ``desired.json``: its bundle and who it serves."""

    bundle: ResolvedBundle
    assignment: CohortAssignment


class DesiredBundle(BaseModel):
    """``<run_dir>/desired.json``: the bundle every worker must serve (written by the
    supervisor after it fetched and validated it) and, during a tenant canary, the cohort
    bundle that serves the cohort's tenants instead; ``seq`` grows with each write."""

    seq: int
    request_id: int | None
    set_at: str
    bundle: ResolvedBundle
    cohort: DesiredCohort | None = None


class CohortState(BaseModel):
    """A cohort as the state shows it: the bundle serving the cohort's tenants, who they are
    (``assignment``; the pod's own bundle serves every other tenant) and its fingerprint."""

    bundle: BundleState
    assignment: CohortAssignment
    fingerprint: str


class WorkerCohort(BaseModel):
    """The cohort one worker routes to (the assignment is the pod's, by fingerprint)."""

    bundle_id: str
    fingerprint: str


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
    cohort: WorkerCohort | None = Field(
        default=None, description="The cohort bundle serving the cohort's tenants, if any."
    )
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
    workers: Sequence[WorkerState],
    workers_expected: int,
    target_id: str | None,
    seq: int,
    cohort: WorkerCohort | None = None,
) -> bool:
    """The pod has switched (what a rollout waits for), defined once: every expected worker is
    alive, serves the target bundle (and the target's cohort, or none) and has applied the
    current desired ``seq``."""
    return (
        target_id is not None
        and workers_expected > 0
        and len(workers) == workers_expected
        and all(
            w.alive
            and w.active is not None
            and w.active.bundle_id == target_id
            and w.applied_seq == seq
            and w.cohort == cohort
            for w in workers
        )
    )


class CohortRequestState(BaseModel):
    """The cohort part of an ask: its bundle's URIs as given and who it serves."""

    model_uri: str
    features_uri: str
    assignment: CohortAssignment


class BundleRequestState(BaseModel):
    """One ask for a bundle: the URIs as given, who asked, when."""

    request_id: int
    model_uri: str
    features_uri: str
    cohort: CohortRequestState | None = None
    source: Literal["admin", "settings", "startup", "refresher", "restart"]
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
    cohort: CohortState | None = Field(
        default=None,
        description="The target's cohort: the bundle that serves the cohort's tenants instead of "
        "the target (a tenant canary), or null when the target serves every tenant.",
    )
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


# The start-up bundle ------------------------------------------------------------------------

STARTUP_FILE = "startup.json"
"""The key of the operator's start-up ConfigMap, and the file name where a pod mounts it."""
STARTUP_MAX_BYTES = 16384
"""The largest start-up document a pod reads (a real one, two 2,048-char URIs per bundle, is
under 10 KB); a larger file is refused unread."""
VERSION_PATTERN = r"^\d{4}-\d{2}-\d{2}-[0-9a-f]{8}$"
"""An artifact's content-derived version, ``YYYY-MM-DD-<8 hex>``."""


class PinnedRef(BaseModel):
    """A bundle by URI and by the content version the operator found behind each URI."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_uri: str = Field(min_length=1, max_length=2048)
    features_uri: str = Field(min_length=1, max_length=2048)
    model_version: str = Field(pattern=VERSION_PATTERN)
    features_version: str = Field(pattern=VERSION_PATTERN)

    @property
    def versions(self) -> tuple[str, str]:
        return (self.model_version, self.features_version)


class StartupDocument(BaseModel):
    """``startup.json`` in the ConfigMap the operator keeps per ArtifactVersion (and a pod
    mounts): the desired bundle and the last good one (the last one every selected pod served).

    Written by the operator, read by every ranker pod that starts without a bundle; a pod
    starts on :meth:`startup_bundle`, never on a bundle that is not known good. Strict (unknown
    fields refused): a new format gets a new ``format_version``.
    """

    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = 1
    artifact_version: str = Field(
        min_length=1, max_length=400, description="<namespace>/<name> of the ArtifactVersion."
    )
    generation: int = Field(ge=0)
    rollout_phase: (
        Literal["Progressing", "Verifying", "Analyzing", "Paused", "Complete", "Failed"] | None
    ) = None
    desired: PinnedRef | None = Field(
        default=None, description="The spec's bundle (null when it cannot be resolved)."
    )
    last_good: PinnedRef | None = Field(
        default=None, description="The last bundle a whole rollout confirmed on every pod."
    )
    written_at: str = Field(max_length=64)

    def startup_bundle(self) -> PinnedRef | None:
        """What a new pod loads: the last good bundle — by the desired URIs when the desired
        bundle is that same content (say, a ``latest/`` URI the pod should go on following) —
        and nothing before any bundle was ever good. A desired bundle still in its rollout (a
        canary under verification) or one that failed is never it: the operator pushes that."""
        good = self.last_good
        if good is None:
            return None
        if self.desired is not None and self.desired.versions == good.versions:
            return self.desired
        return good
