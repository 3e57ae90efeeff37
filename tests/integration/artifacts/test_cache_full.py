"""A full local cache (a real, small tmpfs mounted by the test): a distinct error naming the
cache path and its free space (not the store), and no partial files left behind."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from rankswap.artifacts import CacheFull, artifact_uri, fetch_artifact, publish_artifact

pytestmark = pytest.mark.integration
D1 = date(2026, 5, 1)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs with 8 inodes (the test runs as root, as the suite does)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,nr_inodes=8", "tmpfs", str(mnt)],
        check=True,
        timeout=30,
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "--lazy", str(mnt)], check=True, timeout=30)


def publish(root: str, tmp_path: Path, sizes: dict[str, int]) -> str:
    src = tmp_path / "src"
    src.mkdir()
    for name, size in sizes.items():
        (src / name).write_bytes(os.urandom(size))
    publish_artifact(root, "model", "line-items", D1, src, requires_feature_schema="1.0.0")
    return artifact_uri(root, "model", "line-items", D1)


def leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()]


def test_an_artifact_bigger_than_the_free_space_is_cache_full(
    store_root: str, tmp_path: Path, small_fs: Path
) -> None:
    uri = publish(store_root, tmp_path, {"model.onnx": 1 << 20})  # 1 MiB > 256 KiB
    cache = small_fs / "cache"
    with pytest.raises(CacheFull) as info:
        fetch_artifact(uri, cache)
    message = str(info.value)
    assert message.startswith(f"local cache {cache} is full: ")
    assert f"{info.value.free_bytes} bytes and " in message and f"({1 << 20} bytes" in message
    assert info.value.path == str(cache) and 0 < info.value.free_bytes <= 256 * 1024
    assert leftovers(cache) == []


def test_running_out_midway_removes_the_partial_download(
    store_root: str, tmp_path: Path, small_fs: Path
) -> None:
    """Few bytes but too many files for the filesystem's inodes: ENOSPC after some files."""
    uri = publish(store_root, tmp_path, {f"part-{i}.bin": 100 for i in range(8)})
    cache = small_fs / "cache"
    with pytest.raises(CacheFull, match=rf"{cache}.* inodes free"):
        fetch_artifact(uri, cache)
    assert leftovers(cache) == []
    assert not list(cache.rglob(".download-*"))
