"""Analysis-gated canaries, stable canary pods and instant rollbacks, in the pure planner."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from tests.unit.operator.test_plan import NEW, OLD, T0, pod, run, spec

from rankswap.comparison import Comparison
from rankswap_operator.analysis import bundle_id, judge
from rankswap_operator.errors import InvalidSpec
from rankswap_operator.plan import PinnedBundle, Plan, PodObservation, RolloutRecord, plan
from rankswap_operator.spec import Analysis, parse_spec
from rankswap_operator.status import rollout_from_json, rollout_to_json

pytestmark = pytest.mark.timeout(10)

ANALYSIS = Analysis(min_compared=50, wait_seconds=60, min_top1_agreement=0.8, max_psi=0.25)
CANARY = {"strategy": "Canary", "canary_pods": 1, "canary_verify_seconds": 5, "batch_size": 10}


def comparison(compared: int, agree: int, *, shift: bool = False) -> Comparison:
    c = Comparison(active=bundle_id(NEW.versions), reference=bundle_id(OLD.versions), since="x")
    c.compared = c.offered = compared
    c.top1_agreements = agree
    c.topk_overlap_sum = float(agree)
    c.reference_scores[10] = compared * 10
    c.active_scores[30 if shift else 10] = compared * 10
    return c


def with_shadow(p: PodObservation, *comparisons: Comparison) -> PodObservation:
    assert p.admin is not None
    return dataclasses.replace(p, admin=dataclasses.replace(p.admin, comparisons=comparisons))


def canary_serving(record: RolloutRecord | None = None, **rollout: object) -> RolloutRecord:
    """The record of a rollout whose canary pod ``a`` has served NEW since T0."""
    base = record or RolloutRecord(2, *NEW.versions, "Verifying", T0 - timedelta(seconds=30))
    return dataclasses.replace(base, canary=("a",), wave_completed_at=T0, **rollout)  # type: ignore[arg-type]


def step(
    a: PodObservation, record: RolloutRecord, *, at: float, analysis: Analysis | None = ANALYSIS
) -> Plan:
    return run(
        [a, pod("b", OLD), pod("c", OLD)],
        sp=spec(**CANARY, analysis=analysis),
        rollout=record,
        now=T0 + timedelta(seconds=at),
    )


def test_a_good_canary_passes_the_analysis_and_the_rest_follow() -> None:
    a = with_shadow(pod("a", NEW), comparison(60, 57))
    first = step(a, canary_serving(), at=1)
    assert first.rollout is not None and first.rollout.analysis is not None
    assert first.rollout.analysis.verdict == "Passed"
    assert first.rollout.phase == "Verifying", "still held for canaryVerifySeconds"
    assert "top-1 agreement 0.95 >= 0.8" in first.rollout.analysis.message
    assert first.rollout.analysis.measured["top1Agreement"] == 0.95
    assert "AnalysisPassed" in {e.reason for e in first.events}
    later = step(a, first.rollout, at=6)
    assert {p.pod for p in later.pushes} == {"b", "c"}


def test_a_bad_canary_fails_the_analysis_and_rolls_back() -> None:
    a = with_shadow(pod("a", NEW), comparison(60, 12, shift=True))
    result = step(a, canary_serving(), at=1)
    assert result.rollout is not None and result.rollout.phase == "Failed"
    assert result.rollout.reason == "AnalysisFailed"
    degraded = next(c for c in result.conditions if c.type == "Degraded")
    assert degraded.reason == "AnalysisFailed"
    assert "top-1 agreement 0.2 < min 0.8" in degraded.message
    assert "PSI" in degraded.message and "> max 0.25" in degraded.message
    assert [(p.pod, p.bundle) for p in result.pushes] == [("a", OLD)], "rolled back"
    assert {"AnalysisFailed", "RolloutFailed", "RollingBack"} <= {e.reason for e in result.events}
    (entry,) = result.history
    assert (entry.outcome, entry.analysis) == ("RolledBack", "Failed")


def test_the_canary_waits_for_traffic_then_does_what_the_spec_says() -> None:
    a = with_shadow(pod("a", NEW), comparison(10, 10))
    waiting = step(a, canary_serving(), at=20)
    assert waiting.rollout is not None and waiting.rollout.phase == "Analyzing"
    assert waiting.pushes == ()
    progressing = next(c for c in waiting.conditions if c.type == "Progressing")
    assert progressing.reason == "CanaryAnalyzing" and "10/50" in progressing.message

    fail = step(a, canary_serving(), at=61)
    assert fail.rollout is not None and fail.rollout.reason == "AnalysisFailed"
    assert "not enough traffic" in fail.rollout.message

    passing = step(
        a,
        canary_serving(),
        at=61,
        analysis=dataclasses.replace(ANALYSIS, insufficient_traffic="Pass"),
    )
    assert passing.rollout is not None and passing.rollout.analysis is not None
    assert passing.rollout.analysis.verdict == "Passed"
    assert {p.pod for p in passing.pushes} == {"b", "c"}

    pause = dataclasses.replace(ANALYSIS, insufficient_traffic="Pause")
    paused = step(a, canary_serving(), at=61, analysis=pause)
    assert paused.rollout is not None and paused.rollout.phase == "Paused"
    assert paused.pushes == ()
    assert next(c for c in paused.conditions if c.type == "Progressing").reason == "AnalysisPaused"
    # Traffic comes later: a paused canary is still judged, and goes on.
    busy = with_shadow(pod("a", NEW), comparison(80, 80))
    resumed = step(busy, paused.rollout, at=120, analysis=pause)
    assert resumed.rollout is not None and resumed.rollout.analysis is not None
    assert resumed.rollout.analysis.verdict == "Passed"


def test_only_the_pair_new_against_last_good_counts() -> None:
    other = Comparison(active=bundle_id(NEW.versions), reference="someone+else", since="x")
    other.compared = 500
    a = with_shadow(pod("a", NEW), other)
    result = step(a, canary_serving(), at=1)
    assert result.rollout is not None and result.rollout.phase == "Analyzing"


def test_the_canary_pods_are_kept_when_a_pod_sorting_first_appears() -> None:
    sp = spec(**CANARY)
    first = run([pod("b", OLD), pod("c", OLD), pod("d", OLD)], sp=sp)
    assert [p.pod for p in first.pushes] == ["b"]
    assert first.rollout is not None and first.rollout.canary == ("b",)
    # A scale-out pod "a" (sorting first) appears while the canary verifies.
    pods = [pod("a", OLD), pod("b", NEW), pod("c", OLD), pod("d", OLD)]
    verifying = run(pods, sp=sp, rollout=first.rollout, now=T0 + timedelta(seconds=1))
    assert verifying.rollout is not None and verifying.rollout.phase == "Verifying"
    assert verifying.pushes == (), "the new pod does not get the unverified bundle"
    assert verifying.rollout.canary == ("b",)
    back = rollout_from_json(rollout_to_json(verifying.rollout))
    assert back == verifying.rollout, "canary pods and analysis survive an operator restart"


def test_a_rollback_to_a_bundle_good_before_skips_the_canary() -> None:
    # NEW was rolled out before (history says so); OLD is what pods serve now.
    pods = [pod("a", OLD), pod("b", OLD), pod("c", OLD)]
    sp = spec(**CANARY, analysis=ANALYSIS)
    result = plan(
        spec=sp, generation=5, target=NEW, target_problem=None, last_good=OLD,
        rollout=None, pods=pods, now=T0, good_before={NEW.versions},
    )  # fmt: skip
    assert result.rollout is not None and result.rollout.kind == "Rollback"
    assert [p.pod for p in result.pushes] == ["a", "b", "c"]
    assert "every pod at once" in next(
        e.message for e in result.events if e.reason == "RolloutStarted"
    )
    slow = dataclasses.replace(sp, rollout=dataclasses.replace(sp.rollout, instant_rollback=False))
    canaried = plan(
        spec=slow, generation=5, target=NEW, target_problem=None, last_good=OLD,
        rollout=None, pods=pods, now=T0, good_before={NEW.versions},
    )  # fmt: skip
    assert [p.pod for p in canaried.pushes] == ["a"]


def test_a_first_rollout_has_nothing_to_compare_with() -> None:
    result = judge(ANALYSIS, {"a": ()}, new=NEW.versions, old=None, waited_seconds=0, now=T0)
    assert result.verdict == "Skipped"


def test_analysis_spec_is_parsed_and_checked() -> None:
    body = {
        "selector": {"matchLabels": {"app": "r"}},
        "model": {"uri": NEW.model_uri},
        "features": {"uri": NEW.features_uri},
        "rollout": {
            "strategy": "Canary",
            "analysis": {"minCompared": 20, "maxPSI": 0.3, "insufficientTraffic": "Pause"},
        },
    }
    parsed = parse_spec(body)
    assert parsed.rollout.analysis == Analysis(
        min_compared=20, insufficient_traffic="Pause", max_psi=0.3
    )
    assert parsed.rollout.instant_rollback is True
    with pytest.raises(InvalidSpec, match="at least one threshold"):
        parse_spec({**body, "rollout": {"strategy": "Canary", "analysis": {"minCompared": 5}}})
    with pytest.raises(InvalidSpec, match="needs strategy Canary"):
        parse_spec({**body, "rollout": {"analysis": {"maxPSI": 0.1}}})


def test_bundle_ids_are_the_rankers() -> None:
    assert bundle_id(PinnedBundle("m", "f", "mv", "fv").versions) == "mv+fv"
