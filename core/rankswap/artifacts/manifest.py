"""``manifest.json``: the commit marker of an artifact and the list of what may be trusted.

A reader trusts no file that the manifest does not list with a matching size and sha256.
The ``version`` is derived from the content (kind, name, date and every file's digest), so the
same content published to a dated path and to ``latest/`` has the same version, and a pod-local
cache can be keyed by it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, cast

from rankswap.artifacts.errors import ManifestInvalid, UnsafePath
from rankswap.artifacts.paths import check_component, check_relpath, resolve_within

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
COMPLETE_MARKER = ".complete"
RESERVED_NAMES = frozenset({MANIFEST_NAME, COMPLETE_MARKER})
"""Top-level names of an artifact folder that belong to the contract, never to its files."""
MAX_FILES = 10_000
MAX_MANIFEST_BYTES = 16 << 20
"""A manifest.json larger than this is refused unread (ManifestInvalid)."""
Kind = Literal["model", "features"]
KINDS: tuple[Kind, ...] = ("model", "features")


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What an artifact is and which files make it up.

    ``content_dir`` says where the files sit relative to the manifest's folder: ``""`` in a
    dated path, ``"<version>/"`` in ``latest/`` (so that replacing ``latest/`` is one atomic
    write of manifest.json and the previous content stays readable until then).
    """

    kind: Kind
    name: str
    as_of: date
    created_at: datetime
    files: dict[str, FileEntry]
    version: str
    data_window: tuple[date, date] | None = None
    requires_feature_schema: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    content_dir: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def schema_version(self) -> str | None:
        """The feature schema version a features artifact carries (its name)."""
        return self.name if self.kind == "features" else None

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc["as_of"] = self.as_of.isoformat()
        doc["created_at"] = self.created_at.isoformat()
        doc["data_window"] = (
            {"start": self.data_window[0].isoformat(), "end": self.data_window[1].isoformat()}
            if self.data_window
            else None
        )
        return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"

    def check_paths(self, *, where: str) -> None:
        """Raise UnsafePath unless every name used as a path or key is a safe relative path.

        ``name`` and ``version`` become folders of a pod's cache, ``content_dir`` and the
        ``files`` names become keys in the store and files in the cache.
        """
        check_component(self.name, where=where, what="name")
        check_component(self.version, where=where, what="version")
        if self.content_dir:
            check_relpath(self.content_dir.removesuffix("/"), where=where, what="content_dir")
        if len(self.files) > MAX_FILES:
            raise ManifestInvalid(f"{where}: lists {len(self.files)} files, at most {MAX_FILES}")
        for rel in self.files:
            check_relpath(rel, where=where, what="files entry")
            if rel in RESERVED_NAMES:
                raise UnsafePath(
                    f"{where}: files entry {rel!r} refused: a reserved name of the contract",
                    file=rel,
                )

    @classmethod
    def from_json(cls, raw: bytes, *, where: str) -> Manifest:
        """Parse and check a manifest (ManifestInvalid; UnsafePath for a name that is unsafe)."""
        manifest = cls._parse(raw, where=where)
        manifest.check_paths(where=where)
        derived = content_version(manifest.kind, manifest.name, manifest.as_of, manifest.files)
        if manifest.version != derived:
            # The cache is keyed by version: a manifest claiming another artifact's version
            # must not be able to fill (poison) that version's cache folder.
            raise ManifestInvalid(
                f"{where}: version {manifest.version!r} does not match its content ({derived})"
            )
        return manifest

    @classmethod
    def _parse(cls, raw: bytes, *, where: str) -> Manifest:
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise TypeError("not a JSON object")
            if doc.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"unsupported format_version {doc.get('format_version')!r}")
            if doc["kind"] not in KINDS:
                raise ValueError(f"unknown kind {doc['kind']!r}")
            window = doc.get("data_window")
            return cls(
                kind=cast(Kind, doc["kind"]),
                name=str(doc["name"]),
                as_of=date.fromisoformat(doc["as_of"]),
                created_at=datetime.fromisoformat(doc["created_at"]),
                files={
                    str(k): FileEntry(size=int(v["size"]), sha256=str(v["sha256"]))
                    for k, v in dict(doc["files"]).items()
                },
                version=str(doc["version"]),
                data_window=(
                    (date.fromisoformat(window["start"]), date.fromisoformat(window["end"]))
                    if window
                    else None
                ),
                requires_feature_schema=doc.get("requires_feature_schema"),
                metrics=dict(doc.get("metrics") or {}),
                params=dict(doc.get("params") or {}),
                extra=dict(doc.get("extra") or {}),
                content_dir=str(doc.get("content_dir") or ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestInvalid(f"{where}: not a valid rankswap manifest ({exc})") from exc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scan_files(src_dir: Path) -> dict[str, FileEntry]:
    """Size and sha256 of every regular file below ``src_dir`` (posix relative names).

    Every name must pass :func:`~rankswap.artifacts.paths.check_relpath`, and a symlink is
    followed only while it stays inside ``src_dir`` (UnsafePath otherwise).
    """
    entries: dict[str, FileEntry] = {}
    where = str(src_dir)
    for path in sorted(src_dir.rglob("*")):
        rel = path.relative_to(src_dir).as_posix()
        real = resolve_within(src_dir, rel, where=where, what="file")
        if real.is_file() and not (path.parent == src_dir and path.name in RESERVED_NAMES):
            entries[rel] = FileEntry(size=real.stat().st_size, sha256=sha256_file(real))
    return entries


def content_version(kind: Kind, name: str, as_of: date, files: dict[str, FileEntry]) -> str:
    """``YYYY-MM-DD-<8 hex>``: readable in ``kubectl get av``, and changes with any byte."""
    digest = hashlib.sha256(f"{kind}\0{name}\0{as_of.isoformat()}".encode())
    for rel in sorted(files):
        digest.update(f"\0{rel}\0{files[rel].sha256}".encode())
    return f"{as_of.isoformat()}-{digest.hexdigest()[:8]}"


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
