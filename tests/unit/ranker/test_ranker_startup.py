"""A pod that starts with no bundle loads the start-up bundle from the mounted file
(rankswap_ranker.startup): the file is hostile input; the bundle is pinned to its versions."""

from __future__ import annotations

import json
import logging
import os
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from tests.unit.ranker.builders import Published, publish_bundle

from rankswap.artifacts import parse_uri
from rankswap.podstate import STARTUP_FILE, STARTUP_MAX_BYTES, PinnedRef, StartupDocument
from rankswap_dev.launch import project_config_map
from rankswap_ranker import bundle as bundles
from rankswap_ranker.convergence import PodView, RunDir
from rankswap_ranker.coordinator import Coordinator
from rankswap_ranker.metrics import RankerMetrics
from rankswap_ranker.settings import RankerSettings
from rankswap_ranker.startup import (
    StartupFileInvalid,
    load_startup,
    pinned_uri,
    read_startup_file,
    request_first_bundle,
    startup_bundle,
)

pytestmark = pytest.mark.timeout(60)


def pinned(p: Published, *, latest: bool = False) -> PinnedRef:
    return PinnedRef(
        model_uri=p.latest_model_uri if latest else p.model_uri,
        features_uri=p.latest_features_uri if latest else p.features_uri,
        model_version=p.model.version,
        features_version=p.features.version,
    )


def document(last_good: PinnedRef | None, desired: PinnedRef | None = None) -> dict[str, Any]:
    return StartupDocument(
        artifact_version="rankswap/lineitems",
        generation=2,
        rollout_phase="Verifying" if desired else "Complete",
        desired=desired or last_good,
        last_good=last_good,
        written_at="2026-12-01T12:00:00Z",
    ).model_dump(mode="json")


def mounted(tmp_path: Path, doc: dict[str, Any] | str) -> Path:
    """``startup.json`` as the kubelet projects the ConfigMap (symlinks into ``..data``)."""
    text = doc if isinstance(doc, str) else json.dumps(doc)
    project_config_map({STARTUP_FILE: text}, tmp_path / "startup")
    return tmp_path / "startup" / STARTUP_FILE


def coordinator(tmp_path: Path, allowed: list[str]) -> Coordinator:
    run_dir = RunDir(tmp_path / "run")
    cache = tmp_path / "cache"
    return Coordinator(
        run_dir,
        PodView(run_dir, 1),
        RankerMetrics(CollectorRegistry()),
        allowed_roots=[parse_uri(a) for a in allowed],
        resolver=lambda m, f: bundles.resolve(m, f, cache),
        validator=bundles.load,
    )


def test_the_projected_file_is_read_through_its_symlinks(
    tmp_path: Path, published: Published
) -> None:
    path = mounted(tmp_path, document(pinned(published)))
    assert path.is_symlink()
    doc = read_startup_file(path)
    assert doc is not None and doc.startup_bundle() == pinned(published)


def test_no_file_is_no_start_up_bundle(tmp_path: Path) -> None:
    project_config_map({}, tmp_path / "startup")  # optional: true, no ConfigMap yet
    assert read_startup_file(tmp_path / "startup" / STARTUP_FILE) is None


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("x" * (STARTUP_MAX_BYTES + 1), "larger than"),
        ("{not json", "not UTF-8 JSON"),
        ("[]", "(document)"),
        (json.dumps({"artifact_version": "a/b"}), "problem(s)"),
        (json.dumps({"format_version": 9}), "format_version"),
    ],
)
def test_a_bad_file_is_refused_with_a_clear_reason(tmp_path: Path, content: str, says: str) -> None:
    with pytest.raises(StartupFileInvalid, match="start-up file") as err:
        read_startup_file(mounted(tmp_path, content))
    assert says in str(err.value)


def test_a_symlink_out_of_the_mount_is_refused(tmp_path: Path, published: Published) -> None:
    outside = tmp_path / "elsewhere.json"
    outside.write_text(json.dumps(document(pinned(published))))
    (tmp_path / "startup").mkdir()
    os.symlink(outside, tmp_path / "startup" / STARTUP_FILE)
    with pytest.raises(StartupFileInvalid, match="outside"):
        read_startup_file(tmp_path / "startup" / STARTUP_FILE)


def test_a_latest_uri_is_pinned_to_the_dated_path_of_its_version() -> None:
    root = "s3://b/rankswap"
    assert (
        pinned_uri(f"{root}/models/ranker/latest", "2026-11-20-0a1b2c3d")
        == f"{root}/models/ranker/2026-11-20"
    )
    assert pinned_uri(f"{root}/features/1.0.0/2026-11-19", "2026-11-20-0a1b2c3d") == (
        f"{root}/features/1.0.0/2026-11-19"
    )


def test_uris_that_are_no_artifact_paths_are_refused(published: Published) -> None:
    bad = pinned(published).model_copy(update={"model_uri": "file:///etc/passwd"})
    doc = StartupDocument.model_validate(document(bad))
    with pytest.raises(StartupFileInvalid, match="not an artifact path"):
        startup_bundle(doc)


def test_a_bad_file_is_one_error_line_and_no_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="rankswap.ranker.startup"):
        assert load_startup(mounted(tmp_path, "{not json")) is None
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and "start-up file refused" in record.getMessage()


def test_a_new_pod_loads_the_last_good_bundle_pinned(
    tmp_path: Path, file_root: str, published: Published
) -> None:
    newer = publish_bundle(
        file_root, tmp_path / "src2", item_ids=range(1, 60), as_of=date(2026, 11, 27), weight=2.0
    )
    # A canary of `newer` is under verification: the pod starts on `published`, the last good,
    # by its latest/ URIs — which now hold `newer`, so they are pinned to the dated path.
    good = pinned(published, latest=True)
    path = mounted(tmp_path, document(good, desired=pinned(newer)))
    settings = RankerSettings(allowed_roots=[file_root], startup_file=path)
    coord = coordinator(tmp_path, [file_root])
    request_first_bundle(settings, coord)
    assert coord.requested is not None and coord.requested.source == "startup"
    assert coord.requested.model_uri == published.model_uri  # dated, not latest/
    assert coord.process_pending()
    assert coord.target is not None and coord.target.bundle_id == published.bundle_id
    assert coord.state()["desired"]["status"] == "loaded"


def test_content_other_than_the_pinned_versions_is_not_loaded(
    tmp_path: Path, file_root: str, published: Published
) -> None:
    wrong = pinned(published).model_copy(update={"model_version": "2026-11-20-ffffffff"})
    path = mounted(tmp_path, document(wrong))
    coord = coordinator(tmp_path, [file_root])
    request_first_bundle(RankerSettings(allowed_roots=[file_root], startup_file=path), coord)
    assert coord.process_pending()
    assert coord.target is None
    state = coord.state()
    assert state["desired"]["status"] == "failed" and not state["ready"]
    assert state["last_error"]["code"] == "bundle_incompatible"
    assert "2026-11-20-ffffffff" in state["last_error"]["message"]


def test_a_start_up_bundle_outside_the_allowed_roots_falls_back_to_the_settings(
    tmp_path: Path, file_root: str, published: Published, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = pinned(published).model_copy(
        update={
            "model_uri": "s3://other/models/ranker/2026-11-20",
            "features_uri": "s3://other/features/1.0.0/2026-11-20",
        }
    )
    path = mounted(tmp_path, document(elsewhere))
    settings = RankerSettings(
        allowed_roots=[file_root],
        startup_file=path,
        model_uri=published.model_uri,
        features_uri=published.features_uri,
    )
    coord = coordinator(tmp_path, [file_root])
    with caplog.at_level(logging.ERROR, logger="rankswap.ranker.startup"):
        request_first_bundle(settings, coord)
    assert "start-up bundle refused" in caplog.text
    assert coord.requested is not None and coord.requested.source == "settings"


def test_without_a_start_up_bundle_the_settings_still_apply(
    tmp_path: Path, file_root: str, published: Published
) -> None:
    path = mounted(tmp_path, document(None))
    settings = RankerSettings(
        allowed_roots=[file_root],
        startup_file=path,
        model_uri=published.model_uri,
        features_uri=published.features_uri,
    )
    coord = coordinator(tmp_path, [file_root])
    request_first_bundle(settings, coord)
    assert coord.requested is not None and coord.requested.source == "settings"


def test_an_updated_projection_replaces_the_files_atomically(tmp_path: Path) -> None:
    """The launcher's projection behaves like the kubelet's: an update swaps ``..data``."""
    mount = tmp_path / "startup"
    project_config_map({STARTUP_FILE: "one"}, mount)
    project_config_map({STARTUP_FILE: "two"}, mount)
    assert (mount / STARTUP_FILE).read_text() == "two"
    assert len([p for p in mount.iterdir() if p.name.startswith("..2")]) == 1
