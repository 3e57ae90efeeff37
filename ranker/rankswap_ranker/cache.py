"""The pod-local artifact cache stays bounded: versions no worker can need are removed.

A worker only ever loads the pod's desired bundle, and keeps as warm only bundles that were
desired before. So after each new desired bundle the supervisor keeps the files of the last
``keep`` distinct desired bundles (``warm_bundles + 2``: the new one, the ones that may be warm,
and one spare for a worker still finishing a swap) and removes every other version folder.
After a failed load the same pruning runs, so failed pushes do not make the cache grow.
A removed folder that a worker still has memory-mapped stays readable until it is unmapped
(the kernel keeps the inode), so an in-flight request never loses its data.
"""

from __future__ import annotations

import logging
import shutil
from collections import deque
from pathlib import Path

from rankswap.artifacts import UnsafePath, resolve_within
from rankswap.artifacts.cache_layout import complete_version_dirs
from rankswap_ranker.bundle import BundleRef

log = logging.getLogger("rankswap.ranker.cache")


class CacheKeeper:
    """Remembers the recently desired bundles and prunes the cache to them."""

    def __init__(self, cache_dir: Path, keep: int) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.cache_dir = cache_dir
        self._recent: deque[BundleRef] = deque(maxlen=keep)

    def desired(self, ref: BundleRef, *more: BundleRef) -> list[Path]:
        """Record ``ref`` (and a cohort's bundle, ``more``) as the newest desired bundles;
        return the folders removed."""
        for one in (*more, ref):
            if any(r.bundle_id == one.bundle_id for r in self._recent):
                self._recent = deque(
                    (r for r in self._recent if r.bundle_id != one.bundle_id),
                    maxlen=self._recent.maxlen,
                )
            self._recent.append(one)
        return self.prune()

    def prune(self) -> list[Path]:
        """Remove every version folder outside the recently desired bundles; return them.

        Also run after a failed load: the artifacts it downloaded (one that verified, beside
        one that did not fit or failed its checks) are not desired, so they do not stay.
        """
        keep = {Path(a.local_dir).resolve() for r in self._recent for a in (r.model, r.features)}
        return prune(self.cache_dir, keep)


def prune(cache_dir: Path, keep: set[Path]) -> list[Path]:
    """Remove every completed version folder not in ``keep`` (resolved paths).

    A folder reached through a symlink that leaves the cache is never removed (nor what it
    points at): only folders that resolve inside ``cache_dir`` are.
    """
    removed = []
    for folder in sorted(complete_version_dirs(cache_dir)):
        rel = folder.relative_to(cache_dir).as_posix()
        try:
            real = resolve_within(cache_dir, rel, where=str(cache_dir), what="cache folder")
        except UnsafePath as exc:
            log.warning("not pruning: %s", exc)
            continue
        if real not in keep:
            shutil.rmtree(real, ignore_errors=True)
            removed.append(folder)
    return removed
