"""TenantCanary in the pure planner: cohort steps on every pod, gated by the analysis of the
cohort's requests, widened step by step, completed at 100 %, rolled back on failure."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from tests.unit.operator.test_plan import NEW, OLD, T0, pod, run, spec

from rankswap.cohorts import CohortAssignment
from rankswap.comparison import Comparison
from rankswap_operator.analysis import bundle_id
from rankswap_operator.errors import InvalidSpec
from rankswap_operator.plan import (
    CohortTarget,
    PinnedBundle,
    Plan,
    PodObservation,
    RolloutRecord,
)
from rankswap_operator.spec import Analysis, CohortStep, cohort_at, parse_spec
from rankswap_operator.status import rollout_from_json, rollout_to_json

pytestmark = pytest.mark.timeout(10)

STEPS = (CohortStep(tenants=("t0001", "t0002")), CohortStep(percent=10), CohortStep(percent=50))
ANALYSIS = Analysis(min_compared=20, wait_seconds=60, min_top1_agreement=0.8)
TENANT = {"strategy": "TenantCanary", "steps": STEPS, "canary_verify_seconds": 5}


def cohort(index: int) -> CohortTarget:
    return CohortTarget(NEW, cohort_at(STEPS, index))


def on_step(name: str, index: int | None, *, told_step: int | None = None) -> PodObservation:
    """A pod serving OLD to every tenant but step ``index``'s cohort (None: no cohort)."""
    p = pod(name, OLD)
    assert p.admin is not None
    served = cohort(index) if index is not None else None
    told = cohort(told_step) if told_step is not None else served
    return dataclasses.replace(
        p,
        admin=dataclasses.replace(
            p.admin,
            cohort=served.served if served is not None else None,
            desired_cohort=told.told if told is not None else None,
        ),
    )


def comparison(index: int, compared: int, agree: int) -> Comparison:
    c = Comparison(
        active=bundle_id(NEW.versions),
        reference=bundle_id(OLD.versions),
        since="x",
        cohort=cohort_at(STEPS, index).fingerprint,
    )
    c.compared = c.offered = compared
    c.top1_agreements = agree
    return c


def with_shadow(p: PodObservation, *comparisons: Comparison) -> PodObservation:
    assert p.admin is not None
    return dataclasses.replace(p, admin=dataclasses.replace(p.admin, comparisons=comparisons))


def go(
    pods: list[PodObservation],
    record: RolloutRecord | None,
    *,
    at: float = 0,
    analysis: Analysis | None = ANALYSIS,
    last_good: PinnedBundle | None = OLD,
) -> Plan:
    return run(
        pods,
        sp=spec(**TENANT, analysis=analysis),
        rollout=record,
        now=T0 + timedelta(seconds=at),
        last_good=last_good,
    )


def test_the_cohort_only_widens_and_the_hash_share_is_the_largest_so_far() -> None:
    steps = (CohortStep(("a1",), 10), CohortStep(("b2",), 0), CohortStep((), 50))
    assert cohort_at(steps, 0) == CohortAssignment(tenants=["a1"], percent=10)
    assert cohort_at(steps, 1) == CohortAssignment(tenants=["a1", "b2"], percent=10)
    assert cohort_at(steps, 2) == CohortAssignment(tenants=["a1", "b2"], percent=50)


def test_the_first_step_goes_to_every_pod_at_once_with_the_cohort() -> None:
    result = go([pod("a", OLD), pod("b", OLD), pod("c", OLD)], None)
    assert {p.pod for p in result.pushes} == {"a", "b", "c"}
    assert all(p.bundle == OLD and p.cohort == cohort(0) for p in result.pushes)
    assert result.rollout is not None and result.rollout.phase == "Progressing"
    assert result.rollout.step == 0
    assert set(result.rollout.pushed) == {"a", "b", "c"}, "the step's timeout runs per pod"


def test_a_step_served_everywhere_is_analysed_on_its_own_cohort_then_widens() -> None:
    started = go([pod("a", OLD), pod("b", OLD)], None).rollout
    assert started is not None
    serving = go([on_step("a", 0), on_step("b", 0)], started, at=1)
    assert serving.rollout is not None and serving.rollout.phase == "Analyzing"
    assert serving.rollout.wave_completed_at == T0 + timedelta(seconds=1)
    assert "CohortServing" in {e.reason for e in serving.events}
    assert {p.state for p in serving.pods} == {"Cohort"}, "serving the step, not the target"
    assert serving.updated == 0

    # A comparison of another step (fingerprint) does not count for this one.
    stale = [with_shadow(on_step(n, 0), comparison(1, 50, 50)) for n in ("a", "b")]
    waiting = go(stale, serving.rollout, at=2)
    assert waiting.rollout is not None and waiting.rollout.analysis is not None
    assert waiting.rollout.analysis.verdict == "Waiting"
    assert "step 1/3 (2 tenant(s) [t0001, t0002])" in waiting.rollout.analysis.message

    good = [with_shadow(on_step(n, 0), comparison(0, 15, 14)) for n in ("a", "b")]
    passed = go(good, serving.rollout, at=3)
    assert passed.rollout is not None and passed.rollout.analysis is not None
    assert passed.rollout.analysis.verdict == "Passed", "30 compared, summed over both pods"
    assert passed.rollout.phase == "Verifying" and passed.pushes == ()
    widened = go(good, passed.rollout, at=7)
    assert widened.rollout is not None and widened.rollout.step == 1
    assert widened.rollout.analysis is None and widened.rollout.wave_completed_at is None
    assert {(p.pod, p.cohort) for p in widened.pushes} == {("a", cohort(1)), ("b", cohort(1))}
    assert "CohortStepPassed" in {e.reason for e in widened.events}


def test_after_the_last_step_every_tenant_gets_the_new_bundle_and_it_completes() -> None:
    last = RolloutRecord(2, *NEW.versions, "Verifying", T0, wave_completed_at=T0, step=2)
    pods = [with_shadow(on_step(n, 2), comparison(2, 15, 15)) for n in ("a", "b")]
    judged = go(pods, last, at=10)
    assert judged.rollout is not None and judged.rollout.analysis is not None
    assert judged.rollout.analysis.verdict == "Passed"
    result = go(pods, judged.rollout, at=11)
    assert result.rollout is not None and result.rollout.analysis is not None
    assert result.rollout.analysis.verdict == "Passed", "the last step's verdict is kept"
    assert result.rollout is not None and result.rollout.step == 3
    assert {(p.pod, p.bundle, p.cohort) for p in result.pushes} == {
        ("a", NEW, None),
        ("b", NEW, None),
    }
    assert result.rollout.phase == "Progressing" and result.last_good == OLD
    done = go([pod("a", NEW), pod("b", NEW)], result.rollout, at=12)
    assert done.rollout is not None and done.rollout.phase == "Complete"
    assert done.last_good == NEW, "N-1 stays warm in the pods as the rollback target"
    (entry,) = done.history
    assert entry.outcome == "Succeeded" and "3 cohort steps" in entry.message
    assert entry.analysis == "Passed"


def test_a_failed_step_rolls_the_cohort_back_on_every_pod_at_once() -> None:
    record = RolloutRecord(2, *NEW.versions, "Analyzing", T0, wave_completed_at=T0)
    bad = [with_shadow(on_step(n, 0), comparison(0, 30, 3)) for n in ("a", "b", "c")]
    result = go(bad, record, at=2)
    assert result.rollout is not None and result.rollout.phase == "Failed"
    assert result.rollout.reason == "AnalysisFailed"
    assert "step 1/3" in result.rollout.message and "top-1 agreement 0.1 < min 0.8" in (
        result.rollout.message
    )
    assert {(p.pod, p.bundle, p.cohort) for p in result.pushes} == {
        (n, OLD, None) for n in ("a", "b", "c")
    }, "every pod: the last good bundle for every tenant, no cohort"
    degraded = next(c for c in result.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "AnalysisFailed")
    # Once rolled back, nothing more is pushed and the pods are reported on the last good.
    after = go([pod(n, OLD) for n in ("a", "b", "c")], result.rollout, at=3)
    assert after.pushes == () and {p.state for p in after.pods} == {"Updated"}


def test_a_pod_that_fails_to_load_the_cohort_bundle_fails_the_rollout() -> None:
    record = RolloutRecord(2, *NEW.versions, "Progressing", T0, pushed={"a": T0})
    failing = on_step("a", None, told_step=0)
    assert failing.admin is not None
    failing = dataclasses.replace(
        failing, admin=dataclasses.replace(failing.admin, error="ChecksumMismatch: x")
    )
    result = go([failing, on_step("b", 0)], record, at=1)
    assert result.rollout is not None and result.rollout.reason == "LoadFailed"
    assert {(p.pod, p.cohort) for p in result.pushes} == {("a", None), ("b", None)}


def test_a_first_rollout_or_an_instant_rollback_goes_to_every_pod_at_once() -> None:
    first = go([pod("a"), pod("b")], None, last_good=None)
    assert {(p.pod, p.bundle, p.cohort) for p in first.pushes} == {
        ("a", NEW, None),
        ("b", NEW, None),
    }
    # `rankswap rollback` (or a revert of the spec) in the middle of a tenant canary.
    back = run(
        [on_step("a", 1), on_step("b", 1)],
        sp=spec(**TENANT, analysis=ANALYSIS),
        rollout=RolloutRecord(2, *NEW.versions, "Analyzing", T0, step=1),
        generation=3,
        target=OLD,
        last_good=OLD,
    )
    assert back.rollout is not None and back.rollout.kind == "Rollback"
    assert {(p.pod, p.bundle, p.cohort) for p in back.pushes} == {
        ("a", OLD, None),
        ("b", OLD, None),
    }, "pods still holding a cohort are told the bundle with no cohort"


def test_the_step_survives_an_operator_restart_and_status_shows_the_cohort() -> None:
    record = RolloutRecord(2, *NEW.versions, "Analyzing", T0, wave_completed_at=T0, step=1)
    doc = rollout_to_json(record, STEPS)
    assert doc is not None
    assert doc["tenantCanary"] == {
        "step": 1,
        "steps": 3,
        "current": "2/3",
        "cohort": "2 tenant(s) [t0001, t0002] + 10% of tenants",
        "percent": 10,
        "tenants": 2,
        "fingerprint": cohort_at(STEPS, 1).fingerprint,
    }
    again = rollout_from_json(doc)
    assert again is not None and again.step == 1


def test_the_spec_parses_steps_and_refuses_bad_ones() -> None:
    base = {
        "selector": {"matchLabels": {"app": "r"}},
        "model": {"uri": NEW.model_uri},
        "features": {"uri": NEW.features_uri},
    }
    ok = parse_spec(
        {
            **base,
            "rollout": {
                "strategy": "TenantCanary",
                "steps": [{"tenants": ["t1"]}, {"percent": 20}],
            },
        }
    )
    assert ok.rollout.steps == (CohortStep(("t1",), 0), CohortStep((), 20))
    for rollout, words in (
        ({"strategy": "TenantCanary"}, "needs at least one step"),
        ({"strategy": "Canary", "steps": [{"percent": 5}]}, "need strategy TenantCanary"),
        ({"strategy": "TenantCanary", "steps": [{"tenants": ["bad id"]}]}, "steps[0]"),
        ({"strategy": "TenantCanary", "steps": [{}]}, "tenants or a percent"),
        ({"strategy": "TenantCanary", "steps": [{"percent": 101}]}, "steps[0]"),
        (
            {
                "strategy": "TenantCanary",
                "steps": [
                    {"tenants": [f"t{i}" for i in range(150)]},
                    {"tenants": [f"u{i}" for i in range(60)]},
                ],
            },
            "steps[1]",
        ),
        ({"strategy": "TenantCanary", "steps": [{"percent": 1}] * 11}, "at most 10 steps"),
    ):
        with pytest.raises(InvalidSpec, match=words.replace("[", r"\[").replace("]", r"\]")):
            parse_spec({**base, "rollout": rollout})
    with_analysis = parse_spec(
        {
            **base,
            "rollout": {
                "strategy": "TenantCanary",
                "steps": [{"percent": 10}],
                "analysis": {"minTop1Agreement": 0.5},
            },
        }
    )
    assert with_analysis.rollout.analysis is not None


def test_a_pod_starting_mid_tenant_canary_loads_the_last_good_bundle_for_everyone() -> None:
    """Decided: a new pod starts on the last good bundle for every tenant, with no cohort (the
    start-up document has no cohort); the operator then pushes it the step's cohort, so until
    then the cohort's tenants get the last good bundle too, never the reverse."""
    from rankswap_operator.startup import startup_document

    record = RolloutRecord(2, *NEW.versions, "Analyzing", T0, wave_completed_at=T0, step=1)
    result = go([on_step("a", 1), pod("new-pod")], record, at=1)
    assert result.rollout is not None and result.last_good == OLD

    def pinned(b: PinnedBundle) -> PinnedBundle:  # content versions as the store makes them
        return dataclasses.replace(
            b, model_version=b.model_version + "bbbb", features_version=b.features_version + "ffff"
        )

    doc = startup_document(
        namespace="ns",
        name="av",
        generation=2,
        desired=pinned(NEW),
        last_good=pinned(result.last_good),
        phase=result.rollout.phase,
        now=T0,
    )
    start = doc.startup_bundle()
    assert start is not None and start.versions == pinned(OLD).versions
    assert "cohort" not in doc.model_dump(), "a start-up bundle is always every tenant's"
    # The new pod (serving nothing yet) is then told the step: OLD with the cohort on NEW.
    assert [(p.pod, p.bundle, p.cohort) for p in result.pushes] == [("new-pod", OLD, cohort(1))]
