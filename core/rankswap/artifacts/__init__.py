"""The artifact contract shared by training (writes), the ranker (reads) and the operator (URIs).

Public names only; see ``layout`` for the folder layout and ``manifest`` for manifest.json.
"""

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
    UnsafePath,
    WrongKind,
)
from rankswap.artifacts.layout import LATEST, ArtifactRef, artifact_uri, parse_artifact_uri
from rankswap.artifacts.manifest import FileEntry, Kind, Manifest
from rankswap.artifacts.operations import (
    Publication,
    check_compatible,
    fetch_artifact,
    list_versions,
    moves_latest,
    publish_artifact,
    read_manifest,
)
from rankswap.artifacts.paths import check_relpath, resolve_within
from rankswap.artifacts.uri import ArtifactURI, parse_uri

__all__ = [
    "LATEST",
    "AlreadyPublished",
    "ArtifactError",
    "ArtifactNotFound",
    "ArtifactRef",
    "ArtifactURI",
    "CacheFull",
    "ChecksumMismatch",
    "FileEntry",
    "InvalidURI",
    "Kind",
    "Manifest",
    "ManifestInvalid",
    "ManifestMissing",
    "Publication",
    "SchemaMismatch",
    "StoreUnavailable",
    "UnsafePath",
    "WrongKind",
    "artifact_uri",
    "check_compatible",
    "check_relpath",
    "fetch_artifact",
    "list_versions",
    "moves_latest",
    "parse_artifact_uri",
    "parse_uri",
    "publish_artifact",
    "read_manifest",
    "resolve_within",
]
