"""The rollout planner: a pure function of (spec, target bundle, status so far, observed pods, now).

Everything the operator decides is decided here, so it is unit-tested without a cluster. The
handlers only gather the inputs (the spec, the pods, each pod's admin state, the artifacts'
manifests), call :func:`plan`, and carry out what comes back: pushes to pods, a status, Events.

State that must survive an operator restart lives in the resource's status (``rollout``,
``lastGood``); everything else is observed again on each pass. Hence a restarted operator
resumes a rollout where it stood.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from rankswap.cohorts import CohortAssignment
from rankswap.comparison import Comparison
from rankswap_operator.analysis import AnalysisResult, judge
from rankswap_operator.errors import OperatorError
from rankswap_operator.spec import AVSpec, cohort_at

Phase = Literal["Progressing", "Verifying", "Analyzing", "Paused", "Complete", "Failed"]
Kind = Literal["Rollout", "Rollback"]
PodState = Literal[
    "Updated", "Cohort", "Pending", "Loading", "Failed", "Outdated", "Unreachable", "NotReady"
]
Outcome = Literal["Succeeded", "Failed", "RolledBack", "Superseded"]


@dataclass(frozen=True)
class PinnedBundle:
    """A (model, features) pair, by URI and by the content version behind each URI."""

    model_uri: str
    features_uri: str
    model_version: str
    features_version: str

    @property
    def versions(self) -> tuple[str, str]:
        return (self.model_version, self.features_version)

    @property
    def uris(self) -> tuple[str, str]:
        return (self.model_uri, self.features_uri)

    def label(self) -> str:
        return f"model {self.model_version} + features {self.features_version}"


@dataclass(frozen=True)
class CohortTarget:
    """A tenant canary's step as pods are told it: the new bundle serves ``assignment``'s
    tenants, the pod's own bundle (the last good one) every other tenant."""

    bundle: PinnedBundle
    assignment: CohortAssignment

    @property
    def told(self) -> tuple[tuple[str, str], str]:
        """(URIs, fingerprint): as a pod's ``desired.cohort`` names it."""
        return (self.bundle.uris, self.assignment.fingerprint)

    @property
    def served(self) -> tuple[tuple[str, str], str]:
        """(versions, fingerprint): as a pod's ``cohort`` names it."""
        return (self.bundle.versions, self.assignment.fingerprint)


@dataclass(frozen=True)
class AdminState:
    """What a pod's admin API says about itself."""

    desired_uris: tuple[str, str] | None
    active_versions: tuple[str, str] | None
    converged: bool  # the pod's own rankswap.podstate.pod_converged: every worker serves its target
    loading: bool
    error: str | None  # last load error for the desired bundle, if it failed
    warm_versions: tuple[tuple[str, str], ...] = ()
    comparisons: tuple[Comparison, ...] = ()  # the pod's shadow comparison (PodState.shadow)
    desired_cohort: tuple[tuple[str, str], str] | None = None  # (URIs, fingerprint) asked for
    cohort: tuple[tuple[str, str], str] | None = None  # (versions, fingerprint) of its target


@dataclass(frozen=True)
class PodObservation:
    name: str
    ip: str | None
    running: bool  # phase Running with an IP: its admin API can be called
    ready: bool  # the Kubernetes Ready condition
    admin: AdminState | None  # None: not reachable (or not asked)
    unreachable_reason: str | None = None


@dataclass(frozen=True)
class RolloutRecord:
    generation: int
    model_version: str
    features_version: str
    phase: Phase
    started_at: datetime
    wave_completed_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str = ""
    message: str = ""
    pushed: dict[str, datetime] = field(default_factory=dict)
    kind: Kind = "Rollout"
    """``Rollback``: to a bundle that was good before, every pod at once (instantRollback)."""
    canary: tuple[str, ...] = ()
    """The canary pods, chosen once when the canary wave is first pushed."""
    analysis: AnalysisResult | None = None
    step: int = 0
    """``TenantCanary``: the index of the step in flight (``len(steps)``: every tenant)."""

    def targets(self, bundle: PinnedBundle) -> bool:
        return (self.model_version, self.features_version) == bundle.versions


@dataclass(frozen=True)
class Push:
    pod: str
    ip: str
    bundle: PinnedBundle
    why: str
    cohort: CohortTarget | None = None


@dataclass(frozen=True)
class Condition:
    type: Literal["Ready", "Progressing", "Degraded"]
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str


@dataclass(frozen=True)
class PodReport:
    name: str
    ip: str | None
    state: PodState
    model_version: str | None
    features_version: str | None
    error: str | None


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class HistoryEntry:
    generation: int
    model_version: str
    features_version: str
    outcome: Outcome
    started_at: datetime
    finished_at: datetime
    message: str
    kind: Kind = "Rollout"
    analysis: str | None = None


@dataclass(frozen=True)
class TargetProblem:
    """The desired bundle cannot be rolled out at all (missing, corrupt or incompatible)."""

    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    pushes: tuple[Push, ...]
    rollout: RolloutRecord | None
    last_good: PinnedBundle | None
    pods: tuple[PodReport, ...]
    conditions: tuple[Condition, ...]
    events: tuple[Event, ...]
    history: tuple[HistoryEntry, ...]  # entries to append
    updated: int
    selected: int

    @property
    def settled(self) -> bool:
        """Nothing left to do until something changes (no pushes, no rollout in flight)."""
        return not self.pushes and (
            self.rollout is None or self.rollout.phase in ("Complete", "Failed")
        )


def _serves(pod: PodObservation, bundle: PinnedBundle, cohort: CohortTarget | None = None) -> bool:
    """The pod serves ``bundle`` (to every tenant outside ``cohort``, whose tenants get the
    cohort's bundle; no cohort: to every tenant)."""
    return bool(
        pod.admin
        and pod.admin.converged
        and pod.admin.active_versions == bundle.versions
        and pod.admin.cohort == (cohort.served if cohort is not None else None)
    )


def _told(pod: PodObservation, bundle: PinnedBundle, cohort: CohortTarget | None = None) -> bool:
    return bool(
        pod.admin
        and pod.admin.desired_uris == bundle.uris
        and pod.admin.desired_cohort == (cohort.told if cohort is not None else None)
    )


def _failed_on(
    pod: PodObservation, bundle: PinnedBundle, cohort: CohortTarget | None = None
) -> str | None:
    """The pod was asked for ``bundle`` (and ``cohort``) and reports that loading failed."""
    if pod.admin and _told(pod, bundle, cohort) and not pod.admin.loading and pod.admin.error:
        return pod.admin.error
    return None


def _tenant_canaried(
    spec: AVSpec, rollout: RolloutRecord, target: PinnedBundle, last_good: PinnedBundle | None
) -> bool:
    """This rollout goes cohort by cohort: strategy ``TenantCanary``, a last good bundle to
    serve the other tenants, and not an instant rollback. (A first rollout has no bundle for
    the other tenants: it goes to every pod at once.)"""
    return (
        spec.rollout.strategy == "TenantCanary"
        and last_good is not None
        and last_good.versions != target.versions
        and not (rollout.kind == "Rollback" and spec.rollout.instant_rollback)
    )


def _step_target(
    spec: AVSpec, rollout: RolloutRecord, target: PinnedBundle, last_good: PinnedBundle | None
) -> tuple[PinnedBundle, CohortTarget | None]:
    """What this rollout tells pods now: during a tenant canary's step, the last good bundle
    with the step's cohort on the target; else the target for every tenant."""
    if (
        last_good is not None
        and _tenant_canaried(spec, rollout, target, last_good)
        and rollout.step < len(spec.rollout.steps)
    ):
        return last_good, CohortTarget(target, cohort_at(spec.rollout.steps, rollout.step))
    return target, None


def _canaried(spec: AVSpec, rollout: RolloutRecord) -> bool:
    """This rollout goes canary first (a rollback goes to every pod at once unless
    ``instantRollback`` is false)."""
    return spec.rollout.strategy == "Canary" and not (
        rollout.kind == "Rollback" and spec.rollout.instant_rollback
    )


def _waves(names: Sequence[str], canary: Sequence[str], spec: AVSpec) -> list[list[str]]:
    """The canary pods (recorded once; those still live), then the rest by name in batches."""
    if not canary or not names:
        return [list(names)]
    first = [n for n in canary if n in names]
    rest = [n for n in names if n not in first]
    size = spec.rollout.batch_size
    waves = [first] + [rest[i : i + size] for i in range(0, len(rest), size)]
    return [w for w in waves if w]


def _report(
    pod: PodObservation,
    target: PinnedBundle | None,
    pushed: bool,
    cohort: CohortTarget | None = None,
) -> PodReport:
    """The pod against what it should serve: ``target`` (with ``cohort`` during a tenant
    canary's step, where serving it is state ``Cohort``)."""
    admin = pod.admin
    model_v, feat_v = admin.active_versions if admin and admin.active_versions else (None, None)
    if not pod.running:
        state: PodState = "NotReady"
    elif admin is None:
        state = "Unreachable"
    elif target is not None and _serves(pod, target, cohort):
        state = "Updated" if cohort is None else "Cohort"
    elif target is not None and _failed_on(pod, target, cohort):
        state = "Failed"
    elif admin.loading or (target is not None and _told(pod, target, cohort)):
        state = "Loading"
    elif pushed:
        state = "Pending"
    else:
        state = "Outdated"
    error = admin.error if admin and state == "Failed" else pod.unreachable_reason
    return PodReport(pod.name, pod.ip, state, model_v, feat_v, error)


def plan(
    *,
    spec: AVSpec,
    generation: int,
    target: PinnedBundle | None,
    target_problem: TargetProblem | None,
    last_good: PinnedBundle | None,
    rollout: RolloutRecord | None,
    pods: Sequence[PodObservation],
    now: datetime,
    good_before: Collection[tuple[str, str]] = (),
) -> Plan:
    """Decide the next step of the rollout. ``target`` is None only with a ``target_problem``;
    ``good_before``: versions of bundles that were rolled out successfully before (history),
    so a rollout to one of them is a rollback.

    The steps, each a function below: (1) a new rollout starts when the generation or the
    content behind the URIs changes; (2) an unusable target keeps every pod on the last good
    bundle; (3) failures among the pods asked for the target fail the rollout (and roll back);
    (4) judge the canary by its analysis; (5) act by phase: roll back, repair drift, or advance
    the waves; (6) report."""
    pods = sorted(pods, key=lambda p: p.name)
    acts = _Acts(live=[p for p in pods if p.running and p.ip])
    if target is None:
        problem = target_problem or TargetProblem(
            "Unknown", "the desired bundle could not be resolved"
        )
        return _unusable_target(spec, problem, last_good, rollout, pods, acts)
    rollout = _start_if_new(spec, generation, target, last_good, good_before, rollout, now, acts)
    rollout = _fail_on_pod_errors(spec, generation, target, last_good, rollout, now, acts)
    rollout = _judge_canary(spec, target, last_good, rollout, now, acts)
    if spec.suspend:
        pass
    elif rollout.phase == "Failed":
        if spec.auto_rollback and last_good is not None and last_good.versions != target.versions:
            acts.push_all(last_good, acts.live, "rollback to last good")
    elif rollout.phase == "Complete":
        acts.push_all(target, acts.live, "repair drift (new, restarted or changed pod)")
    elif last_good is not None and _tenant_canaried(spec, rollout, target, last_good):
        rollout, last_good = _advance_cohorts(spec, target, last_good, rollout, now, acts)
    else:
        rollout, last_good = _advance(spec, generation, target, last_good, rollout, now, acts)
    return _report_plan(spec, target, last_good, rollout, pods, now, acts)


@dataclass
class _Acts:
    """What one planning pass has decided so far."""

    live: list[PodObservation]
    """Selected pods that run with an IP (their admin API can be called)."""
    pushes: list[Push] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)

    def push_all(
        self,
        bundle: PinnedBundle,
        candidates: Sequence[PodObservation],
        why: str,
        cohort: CohortTarget | None = None,
    ) -> None:
        for pod in candidates:
            # Push unless the pod was already told: a pod that serves the bundle but wants
            # another one (say, a failed newer bundle) is told again, so it stops wanting it.
            if pod.admin is not None and not _told(pod, bundle, cohort):
                self.pushes.append(Push(pod.name, pod.ip or "", bundle, why, cohort))

    def finish(self, record: RolloutRecord, outcome: Outcome, now: datetime, message: str) -> None:
        self.history.append(
            HistoryEntry(
                record.generation,
                record.model_version,
                record.features_version,
                outcome,
                record.started_at,
                now,
                message,
                record.kind,
                record.analysis.verdict if record.analysis is not None else None,
            )
        )


def _start_if_new(
    spec: AVSpec,
    generation: int,
    target: PinnedBundle,
    last_good: PinnedBundle | None,
    good_before: Collection[tuple[str, str]],
    rollout: RolloutRecord | None,
    now: datetime,
    acts: _Acts,
) -> RolloutRecord:
    """Step 1: the rollout record for ``target``, a new one when the generation or the content
    behind the URIs changed (an unfinished previous rollout is recorded as superseded). A
    target that was good before (the last good bundle, or one an earlier rollout brought to
    every pod) makes it a ``Rollback``."""
    if rollout is not None and rollout.generation == generation and rollout.targets(target):
        return rollout
    if rollout is not None and rollout.phase not in ("Complete", "Failed"):
        acts.finish(rollout, "Superseded", now, "a newer spec or version replaced it")
    good = set(good_before) | ({last_good.versions} if last_good is not None else set())
    kind: Kind = "Rollback" if target.versions in good else "Rollout"
    record = RolloutRecord(
        generation, target.model_version, target.features_version, "Progressing", now, kind=kind
    )
    how: str = spec.rollout.strategy
    if spec.rollout.strategy == "TenantCanary" and not _tenant_canaried(
        spec, record, target, last_good
    ):
        how = "TenantCanary: no last good bundle for the other tenants, every pod at once"
    if kind == "Rollback":
        how = (
            "rollback to a bundle good before: canary first"
            if _canaried(spec, record)
            else ("rollback to a bundle good before: every pod at once")
        )
    acts.events.append(Event("Normal", "RolloutStarted", f"rolling out {target.label()} ({how})"))
    return record


def _unusable_target(
    spec: AVSpec,
    problem: TargetProblem,
    last_good: PinnedBundle | None,
    rollout: RolloutRecord | None,
    pods: Sequence[PodObservation],
    acts: _Acts,
) -> Plan:
    """Step 2: the target cannot be used at all: keep (or put) every pod on the last good
    bundle, and say why in every condition."""
    if not spec.suspend and last_good is not None and spec.auto_rollback:
        acts.push_all(
            last_good, acts.live, f"desired bundle unusable ({problem.reason}); keeping last good"
        )
    reports = tuple(_report(p, last_good, False) for p in pods)
    return Plan(
        pushes=tuple(acts.pushes),
        rollout=rollout,
        last_good=last_good,
        pods=reports,
        conditions=(
            Condition("Ready", "False", problem.reason, problem.message),
            Condition(
                "Progressing",
                "False",
                problem.reason,
                "nothing is rolled out until the spec changes",
            ),
            Condition("Degraded", "True", problem.reason, problem.message),
        ),
        events=(Event("Warning", problem.reason, problem.message),),
        history=tuple(acts.history),
        updated=sum(1 for r in reports if r.state == "Updated"),
        selected=len(pods),
    )


def _fail_on_pod_errors(
    spec: AVSpec,
    generation: int,
    target: PinnedBundle,
    last_good: PinnedBundle | None,
    rollout: RolloutRecord,
    now: datetime,
    acts: _Acts,
) -> RolloutRecord:
    """Step 3: a pod asked for the target failed to load it, or did not serve it within the
    pod timeout: give up on this generation (rolled back where a last good bundle exists)."""
    if rollout.phase in ("Complete", "Failed"):
        return rollout
    timeout = timedelta(seconds=spec.rollout.pod_timeout_seconds)
    failures: list[str] = []
    load_failed = False
    told, cohort = _step_target(spec, rollout, target, last_good)
    for pod in acts.live:
        error = _failed_on(pod, told, cohort)
        pushed_at = rollout.pushed.get(pod.name)
        if error:
            failures.append(f"{pod.name}: {error}")
            load_failed = True
        elif pushed_at is not None and not _serves(pod, told, cohort) and now - pushed_at > timeout:
            failures.append(
                f"{pod.name}: not on the new bundle after {spec.rollout.pod_timeout_seconds}s"
            )
    if not failures:
        return rollout
    reason = "LoadFailed" if load_failed else "Timeout"
    return _fail(spec, target, last_good, rollout, now, acts, reason, "; ".join(failures))


def _fail(
    spec: AVSpec,
    target: PinnedBundle,
    last_good: PinnedBundle | None,
    rollout: RolloutRecord,
    now: datetime,
    acts: _Acts,
    reason: str,
    message: str,
) -> RolloutRecord:
    """The rollout of ``target`` failed: recorded, with Events, rolled back where possible."""
    rolled_back = (
        spec.auto_rollback and last_good is not None and last_good.versions != target.versions
    )
    rollout = dataclasses.replace(
        rollout, phase="Failed", finished_at=now, reason=reason, message=message
    )
    acts.events.append(Event("Warning", "RolloutFailed", f"{target.label()} failed: {message}"))
    acts.finish(rollout, "RolledBack" if rolled_back else "Failed", now, message)
    if rolled_back and last_good is not None:
        acts.events.append(
            Event("Warning", "RollingBack", f"returning pods to last good {last_good.label()}")
        )
    return rollout


def _judge_canary(
    spec: AVSpec,
    target: PinnedBundle,
    last_good: PinnedBundle | None,
    rollout: RolloutRecord,
    now: datetime,
    acts: _Acts,
) -> RolloutRecord:
    """Step 4: once the canary wave serves the target, judge it by ``spec.rollout.analysis``
    (the canary pods' shadow comparison against the last good bundle) until a final verdict;
    ``Failed`` fails the rollout with reason ``AnalysisFailed``."""
    analysis = spec.rollout.analysis
    cohorts = _tenant_canaried(spec, rollout, target, last_good)
    if (
        analysis is None
        or rollout.phase in ("Complete", "Failed")
        or rollout.wave_completed_at is None
        or not (_canaried(spec, rollout) or cohorts)
        or (cohorts and rollout.step >= len(spec.rollout.steps))
        or (rollout.analysis is not None and rollout.analysis.final)
    ):
        return rollout
    by_name = {p.name: p for p in acts.live}
    comparisons: dict[str, tuple[Comparison, ...]] = {}
    # A tenant canary is measured on every pod (each serves the cohort); a canary on its pods.
    for name in list(by_name) if cohorts else rollout.canary:
        if name in by_name:
            admin = by_name[name].admin
            comparisons[name] = admin.comparisons if admin is not None else ()
    cohort = cohort_at(spec.rollout.steps, rollout.step) if cohorts else None
    result = judge(
        analysis,
        comparisons,
        new=target.versions,
        old=last_good.versions if last_good is not None else None,
        waited_seconds=(now - rollout.wave_completed_at).total_seconds(),
        now=now,
        cohort=cohort.fingerprint if cohort is not None else None,
    )
    if cohort is not None:
        where = f"step {rollout.step + 1}/{len(spec.rollout.steps)} ({cohort.describe()}): "
        result = dataclasses.replace(result, message=where + result.message)
    before = rollout.analysis.verdict if rollout.analysis is not None else None
    rollout = dataclasses.replace(rollout, analysis=result)
    if result.verdict == "Failed":
        acts.events.append(Event("Warning", "AnalysisFailed", result.message))
        return _fail(spec, target, last_good, rollout, now, acts, "AnalysisFailed", result.message)
    if result.verdict == "Passed":
        acts.events.append(Event("Normal", "AnalysisPassed", result.message))
    elif result.verdict == "Skipped":
        acts.events.append(Event("Normal", "AnalysisSkipped", result.message))
    elif result.verdict == "Paused" and before != "Paused":
        acts.events.append(Event("Warning", "AnalysisPaused", result.message))
    return rollout


def _advance(
    spec: AVSpec,
    generation: int,
    target: PinnedBundle,
    last_good: PinnedBundle | None,
    rollout: RolloutRecord,
    now: datetime,
    acts: _Acts,
) -> tuple[RolloutRecord, PinnedBundle | None]:
    """Step 4 while in flight: push the target to every wave whose predecessors all serve it,
    holding after the canary wave until it has stayed healthy ``canaryVerifySeconds``; when
    every live pod serves it the rollout is complete and the target becomes the last good."""
    by_name = {p.name: p for p in acts.live}
    canary = _canary_pods(spec, rollout, list(by_name))
    waves = _waves(list(by_name), canary, spec)
    allowed: list[str] = []
    phase: Phase = "Progressing"
    wave_completed_at = rollout.wave_completed_at
    for index, wave in enumerate(waves):
        allowed += wave
        if not all(_serves(by_name[n], target) for n in allowed):
            break
        if index == 0 and canary:
            # The canary wave is done: hold the rest until it has stayed healthy a while and,
            # with an analysis, until the analysis passed.
            if wave_completed_at is None:
                wave_completed_at = now
                acts.events.append(
                    Event(
                        "Normal",
                        "CanaryHealthy",
                        f"canary pods {', '.join(wave)} serve {target.label()}",
                    )
                )
            verdict = rollout.analysis.verdict if rollout.analysis is not None else None
            if spec.rollout.analysis is not None and verdict not in ("Passed", "Skipped"):
                phase = "Paused" if verdict == "Paused" else "Analyzing"
                break
            if now - wave_completed_at < timedelta(seconds=spec.rollout.canary_verify_seconds):
                phase = "Verifying"
                break
    acts.push_all(target, [by_name[n] for n in allowed], "rollout")
    live = acts.live
    if not (live and all(_serves(p, target) for p in live)):
        return dataclasses.replace(
            rollout, phase=phase, wave_completed_at=wave_completed_at, canary=tuple(canary)
        ), last_good
    rollout = dataclasses.replace(
        rollout,
        phase="Complete",
        finished_at=now,
        wave_completed_at=wave_completed_at,
        reason="",
        message="",
    )
    acts.events.append(
        Event("Normal", "RolloutSucceeded", f"all {len(live)} pods serve {target.label()}")
    )
    acts.finish(rollout, "Succeeded", now, f"{len(live)} pods")
    return rollout, target


def _advance_cohorts(
    spec: AVSpec,
    target: PinnedBundle,
    last_good: PinnedBundle,
    rollout: RolloutRecord,
    now: datetime,
    acts: _Acts,
) -> tuple[RolloutRecord, PinnedBundle | None]:
    """A tenant canary in flight: every pod serves the last good bundle to every tenant but the
    step's cohort, which gets the target. Once every live pod serves the step, it holds
    ``canaryVerifySeconds`` and, with an analysis, until the step's analysis passed (measured on
    the cohort's requests of this step); then the next, wider step. After the last step the
    target goes to every tenant (the last good bundle stays warm in every pod); when every pod
    serves it, the rollout is complete."""
    steps = spec.rollout.steps
    while rollout.step < len(steps):
        cohort = CohortTarget(target, cohort_at(steps, rollout.step))
        label = f"step {rollout.step + 1}/{len(steps)} ({cohort.assignment.describe()})"
        acts.push_all(last_good, acts.live, f"tenant canary {label}", cohort)
        if not (acts.live and all(_serves(p, last_good, cohort) for p in acts.live)):
            return dataclasses.replace(rollout, phase="Progressing"), last_good
        if rollout.wave_completed_at is None:
            rollout = dataclasses.replace(rollout, wave_completed_at=now)
            acts.events.append(
                Event(
                    "Normal",
                    "CohortServing",
                    f"{label} served {target.label()} on all {len(acts.live)} pods",
                )
            )
            if spec.rollout.analysis is not None:
                return dataclasses.replace(rollout, phase="Analyzing"), last_good
        verdict = rollout.analysis.verdict if rollout.analysis is not None else None
        if spec.rollout.analysis is not None and verdict not in ("Passed", "Skipped"):
            phase: Phase = "Paused" if verdict == "Paused" else "Analyzing"
            return dataclasses.replace(rollout, phase=phase), last_good
        assert rollout.wave_completed_at is not None
        if now - rollout.wave_completed_at < timedelta(seconds=spec.rollout.canary_verify_seconds):
            return dataclasses.replace(rollout, phase="Verifying"), last_good
        acts.events.append(Event("Normal", "CohortStepPassed", f"{label} passed"))
        last = rollout.step + 1 == len(steps)
        rollout = dataclasses.replace(
            rollout,
            step=rollout.step + 1,
            wave_completed_at=None,
            # The next step is judged afresh; the last step's verdict stays the rollout's.
            analysis=rollout.analysis if last else None,
            pushed={},
        )
    acts.push_all(target, acts.live, "tenant canary passed: every tenant")
    live = acts.live
    if not (live and all(_serves(p, target) for p in live)):
        return dataclasses.replace(rollout, phase="Progressing"), last_good
    rollout = dataclasses.replace(rollout, phase="Complete", finished_at=now, reason="", message="")
    acts.events.append(
        Event("Normal", "RolloutSucceeded", f"all {len(live)} pods serve {target.label()}")
    )
    acts.finish(rollout, "Succeeded", now, f"{len(live)} pods, {len(steps)} cohort steps")
    return rollout, target


def _canary_pods(spec: AVSpec, rollout: RolloutRecord, live: Sequence[str]) -> list[str]:
    """The canary wave: none when this rollout is not canaried (or has one wave only); the
    recorded pods that are still live; else (first pass, or every canary pod gone) the first
    ``canaryPods`` live pods by name, recorded from then on."""
    if not _canaried(spec, rollout) or len(live) <= spec.rollout.canary_pods:
        return [n for n in rollout.canary if n in live] if rollout.canary else []
    kept = [n for n in rollout.canary if n in live]
    return kept or list(live[: spec.rollout.canary_pods])


def _report_plan(
    spec: AVSpec,
    target: PinnedBundle,
    last_good: PinnedBundle | None,
    rollout: RolloutRecord,
    pods: Sequence[PodObservation],
    now: datetime,
    acts: _Acts,
) -> Plan:
    """Step 5: record when pods were told the target, then the per-pod states, conditions and
    Events of this pass."""
    pushed_now = dict(rollout.pushed)
    told, cohort = _step_target(spec, rollout, target, last_good)
    for p in acts.pushes:
        if p.bundle.versions == told.versions and p.cohort == cohort:
            pushed_now[p.pod] = now
    names = {p.name for p in pods}
    rollout = dataclasses.replace(
        rollout, pushed={k: v for k, v in pushed_now.items() if k in names}
    )
    shown = (
        last_good
        if rollout.phase == "Failed" and last_good is not None and spec.auto_rollback
        else target
    )
    if rollout.phase == "Failed" or cohort is None:
        told, cohort = shown, None
    reports = tuple(_report(p, told, p.name in rollout.pushed, cohort) for p in pods)
    conditions = _conditions(spec, rollout, target, last_good, reports, len(acts.live))
    for push in acts.pushes:
        acts.events.append(
            Event("Normal", "Pushed", f"{push.pod}: {push.bundle.label()} ({push.why})")
        )
    return Plan(
        pushes=tuple(acts.pushes),
        rollout=rollout,
        last_good=last_good,
        pods=reports,
        conditions=conditions,
        events=tuple(acts.events),
        history=tuple(acts.history),
        updated=sum(1 for r in reports if r.state == "Updated"),
        selected=len(pods),
    )


def _conditions(
    spec: AVSpec,
    rollout: RolloutRecord,
    target: PinnedBundle,
    last_good: PinnedBundle | None,
    reports: Sequence[PodReport],
    live: int,
) -> tuple[Condition, ...]:
    failed_pods = [r for r in reports if r.state == "Failed"]
    unreachable = [r for r in reports if r.state == "Unreachable"]
    if rollout.phase == "Failed":
        where = (
            f"; pods returned to {last_good.label()}"
            if spec.auto_rollback and last_good and last_good.versions != target.versions
            else ""
        )
        return (
            Condition("Ready", "False", "RolloutFailed", f"{target.label()} failed{where}"),
            Condition(
                "Progressing", "False", "RolloutFailed", "not retried until the spec changes"
            ),
            Condition("Degraded", "True", rollout.reason or "RolloutFailed", rollout.message),
        )
    if spec.suspend:
        progressing = Condition(
            "Progressing", "False", "Suspended", "spec.suspend is true: nothing is pushed"
        )
    elif rollout.phase == "Paused":
        progressing = Condition(
            "Progressing",
            "False",
            "AnalysisPaused",
            rollout.analysis.message if rollout.analysis else "canary analysis paused",
        )
    elif rollout.phase == "Analyzing":
        progressing = Condition(
            "Progressing",
            "True",
            "CanaryAnalyzing",
            rollout.analysis.message
            if rollout.analysis
            else f"canary pods serve {target.label()}; analysing",
        )
    elif rollout.phase == "Verifying":
        progressing = Condition(
            "Progressing",
            "True",
            "CanaryVerifying",
            f"canary pods serve {target.label()}; verifying for {spec.rollout.canary_verify_seconds}s",
        )
    elif rollout.phase == "Progressing":
        progressing = Condition(
            "Progressing", "True", "RollingOut", f"rolling out {target.label()}"
        )
    else:
        progressing = Condition(
            "Progressing", "False", "RolloutComplete", f"{target.label()} rolled out"
        )
    updated = sum(1 for r in reports if r.state == "Updated")
    if live == 0:
        ready = Condition("Ready", "False", "NoPods", "no running pods match spec.selector")
    elif rollout.phase == "Complete" and updated == len(reports):
        ready = Condition(
            "Ready",
            "True",
            "AllPodsUpdated",
            f"{updated}/{len(reports)} pods serve {target.label()}",
        )
    else:
        ready = Condition(
            "Ready",
            "False",
            "PodsNotUpdated",
            f"{updated}/{len(reports)} pods serve {target.label()}",
        )
    if failed_pods:
        degraded = Condition(
            "Degraded", "True", "PodFailed", "; ".join(f"{r.name}: {r.error}" for r in failed_pods)
        )
    elif unreachable:
        degraded = Condition(
            "Degraded",
            "True",
            "PodUnreachable",
            ", ".join(r.name for r in unreachable) + " did not answer on the admin port",
        )
    else:
        degraded = Condition("Degraded", "False", "AsExpected", "")
    return (ready, progressing, degraded)


@dataclass(frozen=True)
class Blocked:
    """A pass stopped before planning by an operator error: the conditions and Events it gets."""

    conditions: tuple[Condition, ...]
    events: tuple[Event, ...]


def plan_blocked(error: OperatorError, previous_degraded_reason: str | None) -> Blocked:
    """The spec is invalid, or the store or the admin token cannot be read: nothing is pushed
    (pods keep what they serve); every condition says why; a Warning Event is posted when the
    reason is new (not again on every retry)."""
    reason, message = error.reason, str(error)
    conditions = (
        Condition("Ready", "False", reason, message),
        Condition("Progressing", "False", reason, message),
        Condition("Degraded", error.degraded, reason, message),
    )
    events = () if previous_degraded_reason == reason else (Event("Warning", reason, message),)
    return Blocked(conditions, events)


def retry_delay(failures: int, base_s: float, cap_s: float) -> float:
    """Back-off before the next pass after ``failures`` (>= 1) consecutive failed passes:
    ``base_s`` doubled per failure, at most ``cap_s``."""
    return float(min(cap_s, base_s * 2 ** min(max(failures, 1) - 1, 16)))
