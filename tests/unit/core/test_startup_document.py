"""The start-up document (rankswap.podstate.StartupDocument): its strict schema and the choice
of the bundle a pod starts on."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rankswap.podstate import PinnedRef, StartupDocument

pytestmark = pytest.mark.timeout(10)

ROOT = "s3://artifacts/rankswap"
GOOD = PinnedRef(
    model_uri=f"{ROOT}/models/ranker/2026-11-20",
    features_uri=f"{ROOT}/features/1.0.0/2026-11-20",
    model_version="2026-11-20-0a1b2c3d",
    features_version="2026-11-20-11111111",
)
NEW = PinnedRef(
    model_uri=f"{ROOT}/models/ranker/2026-11-27",
    features_uri=f"{ROOT}/features/1.0.0/2026-11-27",
    model_version="2026-11-27-deadbeef",
    features_version="2026-11-27-22222222",
)


def doc(**fields: Any) -> StartupDocument:
    return StartupDocument(
        artifact_version="rankswap/lineitems",
        generation=3,
        written_at="2026-12-01T12:00:00Z",
        **fields,
    )


def test_a_completed_rollout_starts_pods_on_the_desired_bundle() -> None:
    assert doc(rollout_phase="Complete", desired=NEW, last_good=NEW).startup_bundle() == NEW


@pytest.mark.parametrize("phase", ["Progressing", "Verifying", "Analyzing", "Paused", "Failed"])
def test_a_desired_bundle_not_yet_good_or_failed_is_never_the_start_up_bundle(phase: str) -> None:
    # A canary under verification, a rollout in progress, a failed one: new pods start on the
    # last good bundle; the operator pushes the desired one where the rollout puts it.
    assert doc(rollout_phase=phase, desired=NEW, last_good=GOOD).startup_bundle() == GOOD


def test_no_good_bundle_yet_means_no_start_up_bundle() -> None:
    assert doc(rollout_phase="Progressing", desired=NEW, last_good=None).startup_bundle() is None
    assert doc(desired=None, last_good=None).startup_bundle() is None


def test_an_unresolvable_desired_bundle_leaves_the_last_good() -> None:
    assert doc(rollout_phase="Complete", desired=None, last_good=GOOD).startup_bundle() == GOOD


def test_the_same_content_by_other_uris_starts_on_the_desired_uris() -> None:
    # The spec moved to latest/ URIs holding the good content: the pod should follow them.
    latest = GOOD.model_copy(
        update={
            "model_uri": f"{ROOT}/models/ranker/latest",
            "features_uri": f"{ROOT}/features/1.0.0/latest",
        }
    )
    assert (
        doc(rollout_phase="Progressing", desired=latest, last_good=GOOD).startup_bundle() == latest
    )


@pytest.mark.parametrize(
    "change",
    [
        {"surprise": 1},
        {"format_version": 2},
        {"generation": -1},
        {"rollout_phase": "Pausing"},
        {"last_good": {**GOOD.model_dump(), "model_version": "../../etc"}},
        {"last_good": {**GOOD.model_dump(), "model_uri": ""}},
        {"last_good": {**GOOD.model_dump(), "model_uri": "s3://b/" + "x" * 3000}},
        {"last_good": {**GOOD.model_dump(), "extra": "x"}},
    ],
)
def test_the_schema_is_strict(change: dict[str, Any]) -> None:
    base = doc(last_good=GOOD).model_dump(mode="json")
    with pytest.raises(ValidationError):
        StartupDocument.model_validate({**base, **change})


def test_the_document_round_trips_through_json() -> None:
    original = doc(rollout_phase="Verifying", desired=NEW, last_good=GOOD)
    assert StartupDocument.model_validate_json(original.model_dump_json()) == original
