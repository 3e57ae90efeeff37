"""Spec parsing, status mapping and the pod admin-state adapter (pure functions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

from rankswap.podstate import (
    ArtifactState,
    BundleState,
    DesiredState,
    LoadError,
    PodState,
    TargetState,
    WorkerState,
    pod_converged,
    pod_ready,
)
from rankswap_operator.errors import InvalidSpec, PodUnreachable
from rankswap_operator.kube import merge_patch
from rankswap_operator.plan import AdminState, Condition, RolloutRecord
from rankswap_operator.podclient import admin_state_from_json
from rankswap_operator.spec import parse_spec
from rankswap_operator.status import conditions_to_json, rollout_from_json, rollout_to_json

T0 = datetime(2026, 5, 2, 12, 0, tzinfo=UTC)
SPEC = {
    "selector": {
        "matchLabels": {"app": "ranker"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
    },
    "model": {"uri": "s3://bucket/prod/models/line-items/2026-05-01"},
    "features": {"uri": "s3://bucket/prod/features/1.0.0/latest", "refreshIntervalSeconds": 60},
    "admin": {"port": 9000, "tokenSecretRef": {"name": "ranker-admin"}},
    "rollout": {"strategy": "Canary", "canaryPods": 2},
}


def test_parse_spec_reads_every_field() -> None:
    spec = parse_spec(SPEC)
    assert spec.rollout.strategy == "Canary" and spec.rollout.canary_pods == 2
    assert (
        spec.admin_port == 9000
        and spec.token_secret == "ranker-admin"
        and spec.token_key == "token"
    )
    assert spec.refresh_interval_seconds == 60 and spec.auto_rollback and not spec.suspend
    assert spec.selector.matches({"app": "ranker", "tier": "a"})
    assert not spec.selector.matches({"app": "ranker", "tier": "c"})
    assert not spec.selector.matches({"app": "other", "tier": "a"})
    assert spec.selector.to_label_selector() == "app=ranker,tier in (a,b)"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"selector": {}}, "selector is empty"),
        ({"model": {"uri": "s3://bucket/prod/features/1.0.0/latest"}}, "not a model artifact"),
        ({"features": {"uri": "s3://bucket/x"}}, "not an artifact path"),
        ({"model": {}}, "incomplete"),
    ],
)
def test_parse_spec_rejects(change: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidSpec, match=says):
        parse_spec({**SPEC, **change})


def test_rollout_record_round_trips_through_status() -> None:
    record = RolloutRecord(
        3,
        "m-v",
        "f-v",
        "Verifying",
        T0,
        wave_completed_at=T0 + timedelta(seconds=5),
        pushed={"pod-a": T0},
    )
    assert rollout_from_json(rollout_to_json(record)) == record


def test_condition_transition_time_kept_while_status_unchanged() -> None:
    first = conditions_to_json([Condition("Ready", "False", "PodsNotUpdated", "0/2")], [], 1, T0)
    later = conditions_to_json(
        [Condition("Ready", "False", "PodsNotUpdated", "1/2")], first, 1, T0 + timedelta(seconds=9)
    )
    flipped = conditions_to_json(
        [Condition("Ready", "True", "AllPodsUpdated", "2/2")], later, 1, T0 + timedelta(seconds=20)
    )
    assert (
        later[0]["lastTransitionTime"] == first[0]["lastTransitionTime"] == "2026-05-02T12:00:00Z"
    )
    assert flipped[0]["lastTransitionTime"] == "2026-05-02T12:00:20Z"


def test_merge_patch_nulls_what_disappears() -> None:
    old = {"rollout": {"pushed": {"a": "t1", "b": "t1"}, "phase": "Progressing"}, "updated": "1/2"}
    new = {"rollout": {"pushed": {"a": "t1"}, "phase": "Complete"}, "updated": "1/2"}
    assert merge_patch(old, new) == {"rollout": {"pushed": {"b": None}, "phase": "Complete"}}


def _bundle(mv: str, fv: str, uri_suffix: str = "") -> BundleState:
    def artifact(uri: str, version: str) -> ArtifactState:
        return ArtifactState(
            uri=f"{uri}{uri_suffix}",
            name=uri,
            version=version,
            as_of="2026-05-01",
            created_at="2026-05-01T00:00:00+00:00",
        )

    return BundleState(bundle_id=f"{mv}+{fv}", model=artifact("m", mv), features=artifact("f", fv))


def _desired(status: Literal["pending", "loading", "loaded", "failed"]) -> DesiredState:
    return DesiredState(
        request_id=3, model_uri="m", features_uri="f", source="admin", at="t", status=status
    )


def _pod(
    workers: list[WorkerState],
    *,
    target: BundleState | None,
    desired: DesiredState | None,
    expected: int = 2,
    last_error: LoadError | None = None,
) -> AdminState:
    """The state as the ranker builds it (ready and converged by the shared definitions),
    through its JSON document, parsed as the operator does."""
    live = [w for w in workers if w.alive]
    actives = {w.active.bundle_id if w.active else None for w in live}
    state = PodState(
        workers_expected=expected,
        ready=pod_ready(workers),
        converged=pod_converged(workers, expected, target.bundle_id if target else None, 7),
        desired=desired,
        target=TargetState(seq=7, request_id=3, **target.model_dump()) if target else None,
        active=live[0].active if live and len(actives) == 1 and None not in actives else None,
        warm=[_bundle("m0", "f0")],
        workers=workers,
        last_error=last_error,
    )
    return admin_state_from_json(json.loads(state.model_dump_json()))


def _worker(slot: int, bundle: BundleState | None, *, alive: bool = True) -> WorkerState:
    return WorkerState(slot=slot, pid=100 + slot, alive=alive, active=bundle, applied_seq=7)


def test_admin_state_reads_the_ranker_document() -> None:
    b1 = _bundle("m1", "f1")
    workers = [_worker(0, b1), _worker(1, b1)]
    state = _pod(workers, target=b1, desired=_desired("loaded"))
    assert (
        state.converged
        and state.active_versions == ("m1", "f1")
        and state.desired_uris == ("m", "f")
    )
    assert state.warm_versions == (("m0", "f0"),) and not state.loading and state.error is None

    # the ranker reports no common active bundle while workers differ
    mixed = _pod([workers[0], _worker(1, _bundle("m0", "f0"))], target=b1, desired=None)
    assert not mixed.converged and mixed.active_versions is None
    missing = _pod([workers[0], _worker(1, b1, alive=False)], target=b1, desired=None)
    assert not missing.converged  # one worker is gone
    behind = _pod(
        [workers[0], workers[1].model_copy(update={"applied_seq": 6})], target=b1, desired=None
    )
    assert not behind.converged  # serves the bundle, has not applied the latest desired seq


def test_admin_state_error_only_when_the_latest_request_failed() -> None:
    error = LoadError(type="ChecksumMismatch", message="model.onnx: sha256 differs")
    failed = _pod([], target=None, desired=_desired("failed"), last_error=error)
    assert failed.error == "ChecksumMismatch: model.onnx: sha256 differs"
    state = _pod([], target=None, desired=_desired("loading"), last_error=error)
    assert state.error is None and state.loading


def test_a_document_that_is_not_a_pod_state_is_refused() -> None:
    with pytest.raises(PodUnreachable, match="workers"):
        admin_state_from_json({"desired": None, "ready": True})
    with pytest.raises(PodUnreachable):
        admin_state_from_json([1, 2])
