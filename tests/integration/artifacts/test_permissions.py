"""Published and cached files get the usual permissions under the process umask, so a ranker
running as another user (uid 10001, as the chart runs it) loads what the training job wrote."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.ranker.builders import publish_bundle

from rankswap.artifacts import artifact_uri, fetch_artifact, parse_uri

pytestmark = pytest.mark.integration
RANKER_UID = 10001


@pytest.fixture
def shared_volume() -> Iterator[Path]:
    """A folder every user may traverse, like a volume shared by the training job and pods
    (pytest's own temp folder is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="rankswap-shared-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"files": set(), "folders": set()}
    for path in folder.rglob("*"):
        kind = "folders" if path.is_dir() else "files"
        found[kind].add(oct(stat.S_IMODE(path.stat().st_mode)))
    return found


@pytest.mark.usefixtures("umask_022")
def test_published_and_cached_files_are_0644_and_folders_0755(
    store_root: str, shared_volume: Path
) -> None:
    published = publish_bundle(store_root, shared_volume / "src", item_ids=range(1, 20))
    if store_root.startswith("file://"):
        store = Path(parse_uri(store_root).path)
        assert modes(store) == {"files": {"0o644"}, "folders": {"0o755"}}
        for label in ("2026-11-20", "latest"):  # the dated path and latest/, each checked
            assert modes(store / "models" / "ranker" / label)["files"] == {"0o644"}
    cache = shared_volume / "cache"
    for uri in (published.model_uri, published.latest_features_uri):
        fetch_artifact(uri, cache)
    assert modes(cache) == {"files": {"0o644"}, "folders": {"0o755"}}


def test_files_follow_the_process_umask(file_root: str, shared_volume: Path) -> None:
    old = os.umask(0o027)
    try:
        publish_bundle(file_root, shared_volume / "src", item_ids=range(1, 20))
        fetch_artifact(artifact_uri(file_root, "model", "ranker", "latest"), shared_volume / "c")
    finally:
        os.umask(old)
    store = Path(parse_uri(file_root).path)
    assert modes(store / "models") == {"files": {"0o640"}, "folders": {"0o750"}}
    assert modes(shared_volume / "c") == {"files": {"0o640"}, "folders": {"0o750"}}


# The interpreter lives below /root (not readable by uid 10001), so the child starts as root,
# imports what it needs, then drops to uid/gid 10001 for good before it touches the store or
# the cache: every file of the artifacts is opened as the ranker's user.
LOAD_AS_RANKER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import onnxruntime
    from rankswap_ranker import bundle
    # One load as root first, into a cache of its own: every module the load imports lazily
    # (NumPy's, llvmlite's) is then in memory, as in a ranker image where uid 10001 can read
    # the code. A test checkout may sit in a folder only root can enter (a CI clone in a
    # mktemp dir); what is tested below is the store and the cache, not the checkout.
    bundle.load(bundle.resolve(sys.argv[1], sys.argv[2], Path(sys.argv[4])))
    os.setgroups([])
    os.setgid({uid})
    os.setuid({uid})
    assert (os.getuid(), os.geteuid(), os.getgid()) == ({uid}, {uid}, {uid})
    ref = bundle.resolve(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
    print(bundle.load(ref).bundle_id)
    """
)


@pytest.mark.usefixtures("umask_022")
def test_a_store_written_by_root_is_loaded_by_uid_10001(shared_volume: Path) -> None:
    """The chart's set-up: the training job writes a file:// volume, the ranker (another uid)
    fetches it into its own cache and serves it."""
    store = shared_volume / "store"
    store.mkdir()
    published = publish_bundle(store.as_uri(), shared_volume / "src", item_ids=range(1, 20))
    cache = shared_volume / "ranker-cache"
    cache.mkdir()
    os.chown(cache, RANKER_UID, RANKER_UID)
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_AS_RANKER.format(uid=RANKER_UID),
            published.latest_model_uri,
            published.latest_features_uri,
            str(cache),
            str(shared_volume / "root-cache"),
        ],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == published.bundle_id
