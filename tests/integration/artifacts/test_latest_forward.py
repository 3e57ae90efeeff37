"""``latest/`` only moves forward: a backfill (an older as-of date published after a newer one)
leaves it where it is, on both stores, unless explicitly asked; the result says what happened."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from rankswap.artifacts import (
    Publication,
    artifact_uri,
    fetch_artifact,
    publish_artifact,
    read_manifest,
)

pytestmark = pytest.mark.integration
OLD, NEW = date(2026, 6, 1), date(2026, 7, 1)


def publish(
    root: str,
    tmp_path: Path,
    when: date,
    tag: str,
    *,
    force: bool = False,
    move_latest_backwards: bool = False,
) -> Publication:
    src = tmp_path / f"src-{tag}"
    src.mkdir()
    (src / "model.onnx").write_bytes(f"onnx-{tag}".encode())
    return publish_artifact(
        root,
        "model",
        "line-items",
        when,
        src,
        requires_feature_schema="1.0.0",
        force=force,
        move_latest_backwards=move_latest_backwards,
    )


def latest_version(root: str) -> str:
    return read_manifest(artifact_uri(root, "model", "line-items", "latest")).version


def test_a_backfill_leaves_latest_at_the_newer_date(store_root: str, tmp_path: Path) -> None:
    new = publish(store_root, tmp_path, NEW, "new")
    assert new.latest == "moved" and new.previous is None
    old = publish(store_root, tmp_path, OLD, "old")
    assert old.latest == "kept" and old.previous is not None
    assert old.previous.version == new.manifest.version
    assert latest_version(store_root) == new.manifest.version
    assert "kept at " + new.manifest.version in old.describe()
    assert "--move-latest-backwards" in old.describe()
    # The backfilled date itself is published and readable.
    dated = artifact_uri(store_root, "model", "line-items", OLD)
    assert read_manifest(dated).version == old.manifest.version
    _, local = fetch_artifact(
        artifact_uri(store_root, "model", "line-items", "latest"), tmp_path / "c"
    )
    assert (local / "model.onnx").read_bytes() == b"onnx-new"


def test_moving_backwards_needs_the_explicit_flag(store_root: str, tmp_path: Path) -> None:
    new = publish(store_root, tmp_path, NEW, "new")
    old = publish(store_root, tmp_path, OLD, "old", move_latest_backwards=True)
    assert old.latest == "moved-backwards"
    assert latest_version(store_root) == old.manifest.version
    assert f"BACKWARDS from {new.manifest.version} to {old.manifest.version}" in old.describe()
    # Forward again: the newer date moves it (re-published with force).
    again = publish(store_root, tmp_path, NEW, "new2", force=True)
    assert again.latest == "moved" and latest_version(store_root) == again.manifest.version


def test_same_date_republished_moves_latest(store_root: str, tmp_path: Path) -> None:
    publish(store_root, tmp_path, NEW, "a")
    b = publish(store_root, tmp_path, NEW, "b", force=True)
    assert b.latest == "moved" and latest_version(store_root) == b.manifest.version
