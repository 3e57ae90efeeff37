"""Spec parsing, status mapping and the pod admin-state adapter (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rankswap_operator.errors import InvalidSpec
from rankswap_operator.kube import merge_patch
from rankswap_operator.plan import Condition, RolloutRecord
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


def _bundle(mv: str, fv: str, uri_suffix: str = "") -> dict[str, object]:
    return {
        "model": {"version": mv, "uri": f"m{uri_suffix}"},
        "features": {"version": fv, "uri": f"f{uri_suffix}"},
    }


def test_admin_state_reads_the_ranker_document() -> None:
    doc = {
        "workers_expected": 2,
        "desired": {"model_uri": "m", "features_uri": "f", "status": "loaded"},
        "active": _bundle("m1", "f1"),
        "workers": [
            {"alive": True, "active": _bundle("m1", "f1")},
            {"alive": True, "active": _bundle("m1", "f1")},
        ],
        "warm": [_bundle("m0", "f0")],
    }
    state = admin_state_from_json(doc)
    assert (
        state.converged
        and state.active_versions == ("m1", "f1")
        and state.desired_uris == ("m", "f")
    )
    assert state.warm_versions == (("m0", "f0"),) and not state.loading and state.error is None

    mixed = {
        **doc,
        "active": None,
    }  # the ranker reports no common active bundle while workers differ
    assert not admin_state_from_json(mixed).converged
    missing = {**doc, "workers": doc["workers"][:1]}  # one worker is gone
    assert not admin_state_from_json(missing).converged


def test_admin_state_error_only_when_the_latest_request_failed() -> None:
    failed = {
        "desired": {"model_uri": "m", "features_uri": "f", "status": "failed"},
        "last_error": {"type": "ChecksumMismatch", "message": "model.onnx: sha256 differs"},
    }
    assert admin_state_from_json(failed).error == "ChecksumMismatch: model.onnx: sha256 differs"
    loading = {**failed, "desired": {**failed["desired"], "status": "loading"}}  # type: ignore[dict-item]
    state = admin_state_from_json(loading)
    assert state.error is None and state.loading
