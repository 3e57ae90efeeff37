"""Publish, read and fetch artifacts: the only way the parts of rankswap touch the store."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
from datetime import date
from pathlib import Path
from typing import Any, Literal

from rankswap.artifacts import cache_layout
from rankswap.artifacts.errors import (
    AlreadyPublished,
    ArtifactError,
    ArtifactNotFound,
    CacheFull,
    ChecksumMismatch,
    InvalidURI,
    ManifestInvalid,
    ManifestMissing,
    SchemaMismatch,
    StoreUnavailable,
    WrongKind,
)
from rankswap.artifacts.layout import LATEST, artifact_location, check_name, parse_artifact_uri
from rankswap.artifacts.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    Kind,
    Manifest,
    content_version,
    now_utc,
    scan_files,
    sha256_file,
)
from rankswap.artifacts.paths import check_relpath, resolve_within
from rankswap.artifacts.store import DISK_FULL, folder_mode, store_for
from rankswap.artifacts.uri import ArtifactURI, parse_uri

log = logging.getLogger(__name__)


def _store_root(loc: ArtifactURI) -> ArtifactURI:
    """The root a location must stay in: ``<root>`` of a layout path, else the location itself."""
    with contextlib.suppress(InvalidURI):
        return parse_artifact_uri(str(loc)).root
    return loc


def _folder(loc: ArtifactURI) -> ArtifactURI:
    """The artifact folder at ``loc``; for file:// resolved, and refused outside its store root."""
    if loc.scheme != "file":
        return loc
    root = _store_root(loc)
    below = loc.path[len(root.path) :].strip("/")
    real = resolve_within(Path(root.path), below, where=str(loc), what="artifact folder")
    return ArtifactURI("file", "", str(real))


def _inside(folder: ArtifactURI, rel: str, *, what: str) -> ArtifactURI:
    """``folder/rel``, with ``rel`` checked (:mod:`rankswap.artifacts.paths`); for file:// with
    symlinks resolved, and refused when they leave ``folder``."""
    if folder.scheme != "file":
        return folder.join(check_relpath(rel, where=str(folder), what=what))
    real = resolve_within(Path(folder.path), rel, where=str(folder), what=what)
    return ArtifactURI("file", "", str(real))


def read_manifest(uri: str, *, expect_kind: Kind | None = None) -> Manifest:
    """The manifest at ``uri`` (an artifact folder). Raises ManifestMissing when there is none."""
    loc = parse_uri(uri)
    store = store_for(loc)
    try:
        raw = store.read(
            _inside(_folder(loc), MANIFEST_NAME, what="manifest"), limit=MAX_MANIFEST_BYTES
        )
    except ArtifactNotFound as exc:
        raise ManifestMissing(
            f"{loc}: no {MANIFEST_NAME} (not published, or publishing did not finish)"
        ) from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestInvalid(
            f"{loc.join(MANIFEST_NAME)}: larger than {MAX_MANIFEST_BYTES} bytes; not read"
        )
    manifest = Manifest.from_json(raw, where=str(loc.join(MANIFEST_NAME)))
    if expect_kind is not None and manifest.kind != expect_kind:
        raise WrongKind(
            f"{loc}: expected a {expect_kind} artifact, found a {manifest.kind} artifact"
        )
    return manifest


def check_compatible(model: Manifest, features: Manifest) -> None:
    """Raise SchemaMismatch unless the model reads the feature schema that ``features`` carries."""
    if model.kind != "model":
        raise WrongKind(f"{model.name}: expected a model artifact, found {model.kind}")
    if features.kind != "features":
        raise WrongKind(f"{features.name}: expected a features artifact, found {features.kind}")
    if model.requires_feature_schema != features.schema_version:
        raise SchemaMismatch(
            f"model {model.name} {model.version} requires feature schema "
            f"{model.requires_feature_schema}, but features {features.version} have schema "
            f"{features.schema_version}"
        )


def publish_artifact(
    root_uri: str,
    kind: Kind,
    name: str,
    as_of: date,
    src_dir: Path,
    *,
    data_window: tuple[date, date] | None = None,
    requires_feature_schema: str | None = None,
    metrics: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    force: bool = False,
    move_latest_backwards: bool = False,
) -> Publication:
    """Publish ``src_dir`` to the dated path, verify it, then point ``latest/`` at it.

    The dated path gets its files first and ``manifest.json`` last: a failure midway leaves no
    manifest, so nothing half-written is ever read. ``latest/`` keeps each version's files in a
    folder of its own and is switched by one write of its manifest, so a failure midway leaves
    the previous ``latest/`` intact and readable. Re-publishing a date raises AlreadyPublished
    unless ``force``.

    ``latest/`` only moves forward (:func:`moves_latest`): publishing an older date (a
    backfill) leaves it where it is, unless ``move_latest_backwards``. The result says which.
    """
    root = parse_uri(root_uri)
    check_name(name)
    if kind == "model" and not requires_feature_schema:
        raise ValueError("a model artifact must name the feature schema version it requires")
    files = scan_files(src_dir)
    if not files:
        raise ArtifactNotFound(f"{src_dir}: nothing to publish (no files)")
    manifest = Manifest(
        kind=kind,
        name=name,
        as_of=as_of,
        created_at=now_utc(),
        files=files,
        version=content_version(kind, name, as_of, files),
        data_window=data_window,
        requires_feature_schema=requires_feature_schema,
        metrics=metrics or {},
        params=params or {},
        extra=extra or {},
    )
    dated = artifact_location(root, kind, name, as_of)
    store = store_for(dated)
    if store.exists(dated.join(MANIFEST_NAME)):
        if not force:
            raise AlreadyPublished(f"{dated} already exists; pass force to replace it")
        store.delete(dated.join(MANIFEST_NAME))  # uncommit first: a reader never sees a mix
    _upload_and_commit(src_dir, dated, manifest)
    log.info("published %s %s to %s", kind, manifest.version, dated)

    latest = artifact_location(root, kind, name, LATEST)
    previous = _current_latest(latest, kind)
    forward = moves_latest(previous, manifest)
    if not forward and not move_latest_backwards:
        assert previous is not None
        result = Publication(manifest, str(latest), "kept", previous)
    else:
        latest_manifest = dataclasses.replace(manifest, content_dir=f"{manifest.version}/")
        _upload_and_commit(src_dir, latest, latest_manifest)
        _prune_latest(latest, keep={manifest.version})
        result = Publication(
            manifest, str(latest), "moved" if forward else "moved-backwards", previous
        )
    log.info("%s", result.describe())
    return result


LatestAction = Literal["moved", "kept", "moved-backwards"]


@dataclasses.dataclass(frozen=True)
class Publication:
    """What :func:`publish_artifact` did: the artifact published, and what became of ``latest/``."""

    manifest: Manifest
    latest_uri: str
    latest: LatestAction
    """``moved`` (forward), ``kept`` (it points at a newer artifact), ``moved-backwards``."""
    previous: Manifest | None
    """What ``latest/`` pointed at before (None: nothing, or nothing readable)."""

    def describe(self) -> str:
        """One line for a person: what was published and what ``latest/`` points at now."""
        m, prev = self.manifest, self.previous
        head = f"published {m.kind} {m.name} {m.version} (as of {m.as_of})"
        if self.latest == "moved":
            return f"{head}; {self.latest_uri} -> {m.version}"
        assert prev is not None
        if self.latest == "kept":
            return (
                f"{head}; {self.latest_uri} kept at {prev.version} (as of {prev.as_of}, newer): "
                "latest/ never moves backwards unless asked (--move-latest-backwards)"
            )
        return f"{head}; {self.latest_uri} moved BACKWARDS from {prev.version} to {m.version}"


def moves_latest(current: Manifest | None, new: Manifest) -> bool:
    """True when ``new`` is not older than what ``latest/`` holds: a later as-of date, or the
    same date created at the same time or later (a re-publish). Nothing there: True."""
    if current is None:
        return True
    return (new.as_of, new.created_at) >= (current.as_of, current.created_at)


def _current_latest(latest: ArtifactURI, kind: Kind) -> Manifest | None:
    """The manifest ``latest/`` holds now; None if there is none or it cannot be used (it is
    replaced then). An unavailable store raises: the decision needs it."""
    try:
        return read_manifest(str(latest), expect_kind=kind)
    except ManifestMissing:
        return None
    except StoreUnavailable:
        raise
    except ArtifactError as exc:
        log.warning("%s holds no usable manifest (%s); replacing it", latest, exc)
        return None


def _content(loc: ArtifactURI, manifest: Manifest) -> ArtifactURI:
    """Where the files of the artifact at ``loc`` sit (checked: inside its folder and root)."""
    folder = _folder(loc)
    where = str(loc.join(MANIFEST_NAME))
    manifest.check_paths(where=where)
    content_dir = manifest.content_dir.removesuffix("/")
    return _inside(folder, content_dir, what="content_dir") if content_dir else folder


def _upload_and_commit(src_dir: Path, dest: ArtifactURI, manifest: Manifest) -> None:
    store = store_for(dest)
    content = _content(dest, manifest)
    for rel in manifest.files:
        store.upload(_inside(content, rel, what="files entry"), src_dir / rel)
    # Verify what the store now holds before committing: read every file back.
    with tempfile.TemporaryDirectory(prefix="rankswap-verify-") as tmp:
        _download_verified(manifest, content, Path(tmp))
    store.write(_inside(_folder(dest), MANIFEST_NAME, what="manifest"), manifest.to_json())


def _prune_latest(latest: ArtifactURI, keep: set[str]) -> None:
    """Drop content folders of older versions from ``latest/``, except the one just replaced.

    The previous version's folder is kept, so a reader that read the old manifest a moment ago
    can still finish its download.
    """
    store = store_for(latest)
    by_version: dict[str, list[ArtifactURI]] = {}
    for obj in store.list(latest):
        rel = obj.path[len(latest.path) :].strip("/")
        try:
            check_relpath(rel, where=str(latest), what="stored key")
        except ArtifactError as exc:
            log.warning("not pruning %s: %s", obj, exc)
            continue
        if "/" in rel:
            by_version.setdefault(rel.split("/", 1)[0], []).append(obj)
    stale = sorted(v for v in by_version if v not in keep)
    for version in stale[:-1]:
        for obj in by_version[version]:
            store.delete(obj)


def _download_verified(manifest: Manifest, content: ArtifactURI, dest: Path) -> None:
    """Download every listed file of ``content`` into ``dest`` and check size and sha256.

    Names are checked (:mod:`rankswap.artifacts.paths`) on both sides: a file is read only
    from inside ``content`` and written only inside ``dest``."""
    store = store_for(content)
    for rel, entry in manifest.files.items():
        source = _inside(content, rel, what="files entry")
        target = resolve_within(dest, rel, where=str(dest), what="files entry")
        target.parent.mkdir(parents=True, exist_ok=True)
        target = resolve_within(dest, rel, where=str(dest), what="files entry")
        try:
            store.download(source, target)
        except ArtifactNotFound as exc:
            raise ChecksumMismatch(
                f"{content.join(rel)}: listed in the manifest but missing", file=rel
            ) from exc
        size = target.stat().st_size
        if size != entry.size:
            raise ChecksumMismatch(
                f"{content.join(rel)}: size {size} != {entry.size} in the manifest", file=rel
            )
        digest = sha256_file(target)
        if digest != entry.sha256:
            raise ChecksumMismatch(
                f"{content.join(rel)}: sha256 {digest[:12]}… != {entry.sha256[:12]}… in the manifest",
                file=rel,
            )


def fetch_artifact(
    uri: str, cache_dir: Path, *, expect_kind: Kind | None = None
) -> tuple[Manifest, Path]:
    """Download the artifact at ``uri`` into ``cache_dir``, verified, and return its local folder.

    The local folder is ``<cache_dir>/<kind>/<name>/<version>/``: content already cached (from a
    dated path or from ``latest/``) is reused without downloading again. A folder appears only
    complete and verified (downloaded beside it, then renamed into place).

    A cache whose filesystem is full raises :class:`CacheFull` naming the cache folder and its
    free space — before downloading when the manifest's total size does not fit, or when the
    filesystem fills up midway; the partial download is removed either way.
    """
    loc = parse_uri(uri)
    manifest = read_manifest(uri, expect_kind=expect_kind)
    content = _content(loc, manifest)
    final = cache_layout.version_dir(cache_dir, manifest)
    if cache_layout.is_complete(final):
        return manifest, final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        cache_layout.version_dir(cache_dir, manifest)  # no symlink appeared on the way
        free, _ = _free_space(final.parent)
        if free < manifest.total_bytes:
            raise _cache_full(cache_dir, manifest, uri, "does not fit; nothing was downloaded")
        _download_into(final, manifest, content)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise _cache_full(
            cache_dir,
            manifest,
            uri,
            f"filled it ({exc.strerror}); the partial download was removed",
        ) from exc
    return manifest, final


def _download_into(final: Path, manifest: Manifest, content: ArtifactURI) -> None:
    """Download beside ``final``, verify, rename into place; the partial download is removed."""
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".download-"))
    try:
        os.chmod(tmp, folder_mode())  # mkdtemp gives 0700; the version folder keeps this mode
        _download_verified(manifest, content, tmp)
        cache_layout.mark_complete(tmp, manifest)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process (a sibling worker) finished the same download first.
            if not cache_layout.is_complete(final):
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)


def _free_space(path: Path) -> tuple[int, int]:
    """Bytes and inodes available to this process on the filesystem of ``path`` (or of its
    nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_favail


def _cache_full(cache_dir: Path, manifest: Manifest, uri: str, what: str) -> CacheFull:
    free, inodes = _free_space(cache_dir)
    return CacheFull(
        f"local cache {cache_dir} is full: {free} bytes and {inodes} inodes free on its "
        f"filesystem; {manifest.kind} {manifest.name} {manifest.version} "
        f"({manifest.total_bytes} bytes, {len(manifest.files)} files) {what} (from {uri})",
        path=str(cache_dir),
        free_bytes=free,
    )


def list_versions(root_uri: str, kind: Kind, name: str) -> list[date]:
    """Dated versions published below ``root_uri`` (committed ones only), oldest first."""
    base = artifact_location(parse_uri(root_uri), kind, name, LATEST).parent
    store = store_for(base)
    dates: set[date] = set()
    for obj in store.list(base):
        rel = obj.path[len(base.path) :].strip("/").split("/")
        if len(rel) == 2 and rel[1] == MANIFEST_NAME and rel[0] != LATEST:
            with contextlib.suppress(ValueError):
                dates.add(date.fromisoformat(rel[0]))
    return sorted(dates)
