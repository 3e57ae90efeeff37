"""The pod-local cache keeps the recently desired bundles' files and removes the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankswap_ranker.bundle import ArtifactInfo, BundleRef
from rankswap_ranker.cache import CacheKeeper


def cached(cache: Path, kind: str, name: str, version: str) -> ArtifactInfo:
    folder = cache / kind / name / version
    folder.mkdir(parents=True)
    (folder / ".complete").touch()
    (folder / "data.bin").write_bytes(b"x")
    return ArtifactInfo(
        f"file:///store/{kind}/{version}", name, version, "2026-07-01", "t", str(folder)
    )


def bundle(cache: Path, day: int, features_day: int | None = None) -> BundleRef:
    fday = day if features_day is None else features_day
    model = cached(cache, "model", "line-items", f"m{day}")
    fdir = cache / "features" / "1.0.0" / f"f{fday}"
    features = (
        ArtifactInfo(
            f"file:///store/features/f{fday}", "1.0.0", f"f{fday}", "2026-07-01", "t", str(fdir)
        )
        if fdir.exists()
        else cached(cache, "features", "1.0.0", f"f{fday}")
    )
    return BundleRef(model, features)


def present(cache: Path) -> set[str]:
    return {p.parent.name for p in cache.glob("*/*/*/.complete")}


def test_keeps_the_last_bundles_and_removes_older_versions(tmp_path: Path) -> None:
    keeper = CacheKeeper(tmp_path, keep=2)
    assert keeper.desired(bundle(tmp_path, 1)) == []
    assert keeper.desired(bundle(tmp_path, 2)) == []
    b3 = bundle(tmp_path, 3)
    removed = keeper.desired(b3)
    assert sorted(p.name for p in removed) == ["f1", "m1"]
    assert present(tmp_path) == {"m2", "f2", "m3", "f3"}


def test_switching_back_to_a_kept_bundle_makes_it_newest(tmp_path: Path) -> None:
    keeper = CacheKeeper(tmp_path, keep=2)
    b1 = bundle(tmp_path, 1)
    keeper.desired(b1)
    keeper.desired(bundle(tmp_path, 2))
    keeper.desired(b1)  # a rollback: b1 is the newest again, b2 the one that may be warm
    keeper.desired(bundle(tmp_path, 3))
    assert present(tmp_path) == {"m1", "f1", "m3", "f3"}


def test_shared_features_are_kept_while_any_kept_bundle_uses_them(tmp_path: Path) -> None:
    keeper = CacheKeeper(tmp_path, keep=1)
    keeper.desired(bundle(tmp_path, 1))
    keeper.desired(bundle(tmp_path, 2, features_day=1))  # new model, same features
    assert present(tmp_path) == {"m2", "f1"}


def test_unfinished_downloads_are_left_alone(tmp_path: Path) -> None:
    partial = tmp_path / "model" / "line-items" / ".download-abc"
    partial.mkdir(parents=True)
    keeper = CacheKeeper(tmp_path, keep=1)
    keeper.desired(bundle(tmp_path, 1))
    keeper.desired(bundle(tmp_path, 2))
    assert partial.is_dir() and present(tmp_path) == {"m2", "f2"}


def test_keep_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep"):
        CacheKeeper(tmp_path, keep=0)
