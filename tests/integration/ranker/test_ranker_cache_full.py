"""A pod whose cache filesystem is full (a real 512 KiB tmpfs mounted by the test): the push
fails with CacheFull naming the cache, the serving bundle stays, and failed pushes leave
nothing behind in the cache."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from tests.unit.ranker.builders import publish_bundle
from tests.unit.ranker.test_ranker_convergence import Pod

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "cache"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], check=True, timeout=30
    )
    try:
        yield mnt
    finally:  # lazy: files a failed test's bundles still map must not keep it mounted
        subprocess.run(["umount", "--lazy", str(mnt)], check=True, timeout=30)


def versions(cache: Path) -> set[str]:
    return {p.parent.name for p in cache.glob("*/*/*/.complete")}


def test_a_push_that_does_not_fit_fails_clearly_and_leaves_nothing(
    file_root: str, tmp_path: Path, cache: Path
) -> None:
    small = publish_bundle(file_root, tmp_path / "a", item_ids=range(1, 51))
    big = publish_bundle(  # new model (fits) + 1.3 MB of features (does not)
        file_root, tmp_path / "b", item_ids=range(1, 20001), as_of=date(2026, 11, 27), weight=2
    )
    pod = Pod(tmp_path / "run", [file_root], cache, keep=3)
    pod.push(small.model_uri, small.features_uri)
    assert pod.active() == [small.bundle_id] * 2
    kept = versions(cache)
    assert kept == {small.model.version, small.features.version}

    for _ in range(3):  # every failed push: same error, the cache does not grow
        pod.push(big.model_uri, big.features_uri)
        assert pod.active() == [small.bundle_id] * 2
        err = pod.coordinator.state()["last_error"]
        assert err["type"] == "CacheFull" and err["code"] == "artifact_unusable"
        assert err["message"].startswith(f"local cache {cache} is full: ")
        assert "bytes and" in err["message"] and big.features.version in err["message"]
        assert versions(cache) == kept
        assert not list(cache.rglob(".download-*"))
