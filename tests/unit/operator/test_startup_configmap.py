"""The operator's start-up ConfigMap document (rankswap_operator.startup): pure builders."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rankswap.podstate import STARTUP_FILE, StartupDocument
from rankswap_operator import startup
from rankswap_operator.plan import PinnedBundle

pytestmark = pytest.mark.timeout(10)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
GOOD = PinnedBundle(
    "file:///s/models/ranker/2026-11-20",
    "file:///s/features/1.0.0/2026-11-20",
    "2026-11-20-0a1b2c3d",
    "2026-11-20-11111111",
)
NEW = PinnedBundle(
    "file:///s/models/ranker/2026-11-27",
    "file:///s/features/1.0.0/2026-11-27",
    "2026-11-27-deadbeef",
    "2026-11-27-22222222",
)


def document(
    desired: PinnedBundle | None = NEW,
    last_good: PinnedBundle | None = GOOD,
    phase: str | None = "Verifying",
    now: datetime = NOW,
) -> StartupDocument:
    return startup.startup_document(
        namespace="rankswap",
        name="lineitems",
        generation=4,
        desired=desired,
        last_good=last_good,
        phase=phase,  # type: ignore[arg-type]
        now=now,
    )


def test_the_document_names_desired_and_last_good_pinned_to_versions() -> None:
    doc = document()
    assert doc.artifact_version == "rankswap/lineitems"
    assert doc.rollout_phase == "Verifying"
    assert doc.desired is not None and doc.desired.versions == NEW.versions
    assert doc.last_good is not None and doc.last_good.model_uri == GOOD.model_uri
    assert doc.written_at == "2026-12-01T12:00:00Z"
    assert doc.startup_bundle() == doc.last_good  # a canary under verification is not it


def test_the_configmap_is_owned_by_the_artifactversion_and_parses_back() -> None:
    doc = document()
    body = startup.configmap_body("rankswap", "lineitems", "uid-1", doc)
    assert body["metadata"]["name"] == "lineitems-startup"
    assert body["metadata"]["namespace"] == "rankswap"
    (owner,) = body["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "rankswap.io/v1alpha1",
        "kind": "ArtifactVersion",
        "name": "lineitems",
        "uid": "uid-1",
        "controller": True,
    }
    assert body["metadata"]["labels"]["rankswap.io/artifactversion"] == "lineitems"
    assert set(body["data"]) == {STARTUP_FILE}
    assert (
        json.loads(body["data"][STARTUP_FILE])["last_good"]["model_version"] == GOOD.model_version
    )
    assert startup.parse_configmap_data(body["data"]) == doc


@pytest.mark.parametrize(
    "data", [None, {}, {STARTUP_FILE: ""}, {STARTUP_FILE: "{"}, {STARTUP_FILE: '{"x": 1}'}]
)
def test_a_configmap_without_a_valid_document_parses_as_none(data: dict[str, str] | None) -> None:
    assert startup.parse_configmap_data(data) is None


def test_only_a_change_of_bundles_or_phase_is_a_change() -> None:
    later = NOW + timedelta(minutes=5)
    assert startup._content(document()) == startup._content(document(now=later))
    assert startup._content(document()) != startup._content(document(phase="Complete"))
    assert startup._content(document()) != startup._content(document(last_good=NEW))
    assert startup._content(document()) != startup._content(document(desired=None))


def test_names_stay_valid_and_distinct_for_long_artifactversion_names() -> None:
    assert startup.configmap_name("a" * 245) == "a" * 245 + "-startup"
    long_a, long_b = "a" * 250 + "x", "a" * 250 + "y"
    names = {startup.configmap_name(long_a), startup.configmap_name(long_b)}
    assert len(names) == 2 and all(len(n) <= 253 and n.endswith("-startup") for n in names)
    body = startup.configmap_body("ns", long_a, "u", document())
    assert "rankswap.io/artifactversion" not in body["metadata"]["labels"]  # > 63 characters
