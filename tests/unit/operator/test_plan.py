"""The rollout planner, as a pure function: no cluster, no pods, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rankswap_operator.errors import (
    AdminTokenUnavailable,
    InvalidSpec,
    KubeError,
    OperatorError,
    PodUnreachable,
    StoreUnavailable,
)
from rankswap_operator.plan import (
    AdminState,
    PinnedBundle,
    Plan,
    PodObservation,
    RolloutRecord,
    TargetProblem,
    plan,
    plan_blocked,
    retry_delay,
)
from rankswap_operator.spec import AVSpec, Rollout, Selector

T0 = datetime(2026, 5, 2, 12, 0, tzinfo=UTC)
OLD = PinnedBundle(
    "file:///s/models/m/2026-05-01",
    "file:///s/features/1.0.0/2026-05-01",
    "2026-05-01-aaaa",
    "2026-05-01-ffff",
)
NEW = PinnedBundle(
    "file:///s/models/m/2026-05-02",
    "file:///s/features/1.0.0/2026-05-02",
    "2026-05-02-bbbb",
    "2026-05-02-eeee",
)


def spec(**rollout: object) -> AVSpec:
    return AVSpec(
        selector=Selector(match_labels=(("app", "ranker"),)),
        model_uri=NEW.model_uri,
        features_uri=NEW.features_uri,
        rollout=Rollout(**rollout),  # type: ignore[arg-type]
    )


def pod(
    name: str,
    on: PinnedBundle | None = None,
    *,
    told: PinnedBundle | None = None,
    error: str | None = None,
    loading: bool = False,
    reachable: bool = True,
) -> PodObservation:
    desired = told or on
    admin = AdminState(
        desired_uris=desired.uris if desired else None,
        active_versions=on.versions if on else None,
        converged=True,
        loading=loading,
        error=error,
    )
    return PodObservation(
        name, f"127.0.0.{len(name)}", True, on is not None, admin if reachable else None
    )


def run(
    pods: list[PodObservation],
    *,
    sp: AVSpec | None = None,
    rollout: RolloutRecord | None = None,
    last_good: PinnedBundle | None = OLD,
    now: datetime = T0,
    generation: int = 2,
    target: PinnedBundle | None = NEW,
    problem: TargetProblem | None = None,
) -> Plan:
    return plan(
        spec=sp or spec(),
        generation=generation,
        target=target,
        target_problem=problem,
        last_good=last_good,
        rollout=rollout,
        pods=pods,
        now=now,
    )


def test_all_at_once_pushes_every_pod_and_starts_a_rollout() -> None:
    result = run([pod("a", OLD), pod("b", OLD), pod("c", OLD)])
    assert [p.pod for p in result.pushes] == ["a", "b", "c"]
    assert all(p.bundle == NEW for p in result.pushes)
    assert result.rollout is not None and result.rollout.phase == "Progressing"
    assert set(result.rollout.pushed) == {"a", "b", "c"}
    assert {c.type: c.status for c in result.conditions} == {
        "Ready": "False",
        "Progressing": "True",
        "Degraded": "False",
    }
    assert any(e.reason == "RolloutStarted" for e in result.events)


def test_rollout_completes_when_every_pod_confirms() -> None:
    started = run([pod("a", OLD), pod("b", OLD)]).rollout
    result = run([pod("a", NEW), pod("b", NEW)], rollout=started, now=T0 + timedelta(seconds=3))
    assert result.pushes == ()
    assert result.rollout is not None and result.rollout.phase == "Complete"
    assert result.last_good == NEW and result.updated == 2
    assert {c.type: (c.status, c.reason) for c in result.conditions}["Ready"] == (
        "True",
        "AllPodsUpdated",
    )
    assert [h.outcome for h in result.history] == ["Succeeded"]


def test_told_pods_are_not_pushed_again() -> None:
    started = run([pod("a", OLD), pod("b", OLD)]).rollout
    result = run(
        [pod("a", OLD, told=NEW, loading=True), pod("b", NEW)],
        rollout=started,
        now=T0 + timedelta(seconds=1),
    )
    assert result.pushes == ()
    assert [r.state for r in result.pods] == ["Loading", "Updated"]


def test_canary_goes_first_then_waits_for_verification_then_batches() -> None:
    sp = spec(strategy="Canary", canary_pods=1, canary_verify_seconds=30, batch_size=2)
    pods = [pod(n, OLD) for n in "abcde"]
    first = run(pods, sp=sp)
    assert [p.pod for p in first.pushes] == ["a"]

    canary_done = [pod("a", NEW), *[pod(n, OLD) for n in "bcde"]]
    verifying = run(canary_done, sp=sp, rollout=first.rollout, now=T0 + timedelta(seconds=5))
    assert (
        verifying.pushes == ()
        and verifying.rollout is not None
        and verifying.rollout.phase == "Verifying"
    )
    assert {c.type: c.reason for c in verifying.conditions}["Progressing"] == "CanaryVerifying"

    batch = run(canary_done, sp=sp, rollout=verifying.rollout, now=T0 + timedelta(seconds=40))
    assert [p.pod for p in batch.pushes] == ["b", "c"]
    nxt = run(
        [pod("a", NEW), pod("b", NEW), pod("c", NEW), pod("d", OLD), pod("e", OLD)],
        sp=sp,
        rollout=batch.rollout,
        now=T0 + timedelta(seconds=45),
    )
    assert [p.pod for p in nxt.pushes] == ["d", "e"]


def test_load_failure_rolls_back_and_degrades_without_retrying() -> None:
    started = run([pod("a", OLD), pod("b", OLD)]).rollout
    failing = [pod("a", OLD, told=NEW, error="ChecksumMismatch: model.onnx"), pod("b", NEW)]
    result = run(failing, rollout=started, now=T0 + timedelta(seconds=2))
    assert result.rollout is not None and result.rollout.phase == "Failed"
    assert {(p.pod, p.bundle) for p in result.pushes} == {("a", OLD), ("b", OLD)}
    cond = {c.type: c for c in result.conditions}
    assert cond["Degraded"].status == "True" and cond["Degraded"].reason == "LoadFailed"
    assert "model.onnx" in cond["Degraded"].message
    assert [h.outcome for h in result.history] == ["RolledBack"]
    assert {e.reason for e in result.events} >= {"RolloutFailed", "RollingBack"}
    assert result.last_good == OLD

    # Same generation again, pods back on OLD: nothing is retried, a new pod gets the last good bundle.
    again = run(
        [pod("a", OLD), pod("b", OLD), pod("c", None)],
        rollout=result.rollout,
        now=T0 + timedelta(seconds=9),
    )
    assert [(p.pod, p.bundle) for p in again.pushes] == [("c", OLD)]
    assert again.rollout is not None and again.rollout.phase == "Failed"


def test_timeout_fails_the_rollout() -> None:
    sp = spec(pod_timeout_seconds=30)
    started = run([pod("a", OLD)], sp=sp).rollout
    result = run(
        [pod("a", OLD, told=NEW, loading=True)],
        sp=sp,
        rollout=started,
        now=T0 + timedelta(seconds=31),
    )
    assert (
        result.rollout is not None
        and result.rollout.phase == "Failed"
        and result.rollout.reason == "Timeout"
    )


def test_no_rollback_when_disabled() -> None:
    sp = AVSpec(
        selector=Selector((("app", "r"),)),
        model_uri=NEW.model_uri,
        features_uri=NEW.features_uri,
        auto_rollback=False,
    )
    started = run([pod("a", OLD)], sp=sp).rollout
    result = run(
        [pod("a", OLD, told=NEW, error="boom")],
        sp=sp,
        rollout=started,
        now=T0 + timedelta(seconds=1),
    )
    assert result.pushes == () and [h.outcome for h in result.history] == ["Failed"]


def test_complete_rollout_repairs_drift_and_serves_new_pods() -> None:
    done = RolloutRecord(2, NEW.model_version, NEW.features_version, "Complete", T0, finished_at=T0)
    result = run([pod("a", NEW), pod("b", OLD), pod("new", None)], rollout=done, last_good=NEW)
    assert [(p.pod, p.bundle) for p in result.pushes] == [("b", NEW), ("new", NEW)]
    assert result.rollout is not None and result.rollout.phase == "Complete"
    assert {c.type: c.status for c in result.conditions}["Ready"] == "False"


def test_unusable_target_keeps_pods_on_last_good() -> None:
    problem = TargetProblem(
        "SchemaMismatch", "model requires feature schema 2.0.0, features have 1.0.0"
    )
    result = run([pod("a", OLD), pod("b", None)], target=None, problem=problem)
    assert [(p.pod, p.bundle) for p in result.pushes] == [("b", OLD)]
    cond = {c.type: c for c in result.conditions}
    assert cond["Degraded"].reason == "SchemaMismatch" and cond["Ready"].status == "False"


def test_suspend_pushes_nothing() -> None:
    sp = AVSpec(
        selector=Selector((("app", "r"),)),
        model_uri=NEW.model_uri,
        features_uri=NEW.features_uri,
        suspend=True,
    )
    result = run([pod("a", OLD)], sp=sp)
    assert result.pushes == ()
    assert {c.type: c.reason for c in result.conditions}["Progressing"] == "Suspended"


def test_resume_after_operator_restart_does_not_start_over() -> None:
    sp = spec(strategy="Canary", canary_pods=1, canary_verify_seconds=0, batch_size=1)
    mid = RolloutRecord(
        2,
        NEW.model_version,
        NEW.features_version,
        "Progressing",
        T0,
        wave_completed_at=T0,
        pushed={"a": T0, "b": T0},
    )
    result = run(
        [pod("a", NEW), pod("b", NEW), pod("c", OLD)],
        sp=sp,
        rollout=mid,
        now=T0 + timedelta(seconds=2),
    )
    assert [p.pod for p in result.pushes] == ["c"]
    assert not any(e.reason == "RolloutStarted" for e in result.events)


def test_new_spec_supersedes_unfinished_rollout() -> None:
    mid = RolloutRecord(1, OLD.model_version, OLD.features_version, "Progressing", T0)
    result = run([pod("a", OLD)], rollout=mid, generation=2)
    assert [h.outcome for h in result.history] == ["Superseded"]
    assert result.rollout is not None and result.rollout.generation == 2


def test_unreachable_pod_is_reported_not_pushed() -> None:
    result = run([pod("a", OLD), pod("b", OLD, reachable=False)])
    assert [p.pod for p in result.pushes] == ["a"]
    assert [r.state for r in result.pods] == ["Pending", "Unreachable"]
    assert {c.type: c.reason for c in result.conditions}["Degraded"] == "PodUnreachable"


def test_no_pods_is_not_ready() -> None:
    result = run([])
    assert {c.type: c.reason for c in result.conditions}["Ready"] == "NoPods"


@pytest.mark.parametrize(
    ("error", "degraded"),
    [
        (InvalidSpec("spec.selector is empty"), "True"),
        (StoreUnavailable("s3://bucket: connect timeout"), "Unknown"),
        (AdminTokenUnavailable("admin token Secret ns/tok: Not Found"), "True"),
    ],
)
def test_a_blocked_pass_says_why_in_every_condition_and_posts_its_event_once(
    error: OperatorError, degraded: str
) -> None:
    first = plan_blocked(error, previous_degraded_reason="AsExpected")
    assert [(c.type, c.status, c.reason) for c in first.conditions] == [
        ("Ready", "False", error.reason),
        ("Progressing", "False", error.reason),
        ("Degraded", degraded, error.reason),
    ]
    assert all(c.message == str(error) for c in first.conditions)
    assert [(e.type, e.reason) for e in first.events] == [("Warning", error.reason)]
    again = plan_blocked(error, previous_degraded_reason=error.reason)
    assert again.conditions == first.conditions
    assert again.events == ()


def test_only_temporary_errors_are_retried_by_the_loop() -> None:
    assert not InvalidSpec.temporary
    assert StoreUnavailable.temporary and AdminTokenUnavailable.temporary
    assert KubeError.temporary and PodUnreachable.temporary


def test_retry_delay_doubles_up_to_its_cap() -> None:
    assert [retry_delay(n, 1.0, 10.0) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert retry_delay(10_000, 0.5, 30.0) == 30.0
    assert retry_delay(0, 0.5, 30.0) == 0.5
