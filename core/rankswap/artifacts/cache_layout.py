"""The local artifact cache a pod (or ``rankswap examples``) fetches into.

::

    <cache>/<kind>/<name>/<version>/     the artifact's files, its manifest.json, .complete

A version folder is written beside its final place (``.download-*``), verified, marked with
``COMPLETE_MARKER`` and renamed into place, so a folder with the marker is complete and
verified; nothing else in the cache is trusted. Content is addressed by version, so a dated
path and ``latest/`` naming the same content share one folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rankswap.artifacts.errors import ArtifactError
from rankswap.artifacts.manifest import COMPLETE_MARKER, MANIFEST_NAME, Manifest
from rankswap.artifacts.paths import resolve_within

__all__ = [
    "COMPLETE_MARKER",
    "complete_version_dirs",
    "is_complete",
    "mark_complete",
    "read_cached_manifest",
    "version_dir",
    "version_rel",
]


def version_rel(manifest: Manifest) -> str:
    """``<kind>/<name>/<version>``: the artifact's folder relative to the cache."""
    return f"{manifest.kind}/{manifest.name}/{manifest.version}"


def version_dir(cache_dir: Path, manifest: Manifest) -> Path:
    """The artifact's folder in ``cache_dir``, refused (UnsafePath) if a symlink on the way
    leaves the cache. The names were checked when the manifest was read."""
    rel = version_rel(manifest)
    resolve_within(cache_dir, rel, where=str(cache_dir), what="cache folder")
    return cache_dir / rel


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def mark_complete(folder: Path, manifest: Manifest) -> None:
    """Write the manifest and the marker into a verified download folder (before its rename)."""
    (folder / MANIFEST_NAME).write_bytes(manifest.to_json())
    (folder / COMPLETE_MARKER).touch()


def complete_version_dirs(cache_dir: Path) -> Iterator[Path]:
    """Every completed version folder in the cache."""
    return (p.parent for p in cache_dir.glob(f"*/*/*/{COMPLETE_MARKER}"))


def read_cached_manifest(folder: Path) -> Manifest | None:
    """The manifest of a cached version folder, or None when it is missing or unreadable."""
    path = folder / MANIFEST_NAME
    try:
        return Manifest.from_json(path.read_bytes(), where=str(path))
    except (OSError, ArtifactError):
        return None
