"""Errors of the artifact contract.

The whole tree, so a caller can choose what to catch::

    ArtifactError                   anything wrong with an artifact or its store
    ├── InvalidURI                  not file:///abs/... or s3://bucket/prefix
    ├── StoreUnavailable            the store did not answer (network, credentials, I/O)
    ├── ArtifactNotFound            nothing at that path
    │   └── ManifestMissing         files may be there, but no manifest.json (never committed)
    ├── ManifestInvalid             manifest.json is not a manifest this code understands
    ├── UnsafePath                  a name that would leave its folder (absolute, '..', a
    │                               symlink out of the store or cache...); ``file`` names it
    ├── ChecksumMismatch            a listed file is missing or its size/sha256 differ
    ├── WrongKind                   a features artifact where a model was expected, or vice versa
    ├── SchemaMismatch              the model needs another feature schema version
    ├── CacheFull                   the local cache's filesystem has no room (names the
    │                               local path and its free space, not the store)
    └── AlreadyPublished            that dated path exists; pass force=True to replace it

Every message names the URI (and the file, where one is at fault), so it can be shown as is.
"""

from __future__ import annotations


class ArtifactError(Exception):
    """Base class: anything wrong with an artifact or its store."""


class InvalidURI(ArtifactError):
    pass


class StoreUnavailable(ArtifactError):
    pass


class ArtifactNotFound(ArtifactError):
    pass


class ManifestMissing(ArtifactNotFound):
    pass


class ManifestInvalid(ArtifactError):
    pass


class ChecksumMismatch(ArtifactError):
    def __init__(self, message: str, *, file: str) -> None:
        super().__init__(message)
        self.file = file


class UnsafePath(ArtifactError):
    def __init__(self, message: str, *, file: str) -> None:
        super().__init__(message)
        self.file = file


class CacheFull(ArtifactError):
    def __init__(self, message: str, *, path: str, free_bytes: int) -> None:
        super().__init__(message)
        self.path = path
        self.free_bytes = free_bytes


class WrongKind(ArtifactError):
    pass


class SchemaMismatch(ArtifactError):
    pass


class AlreadyPublished(ArtifactError):
    pass
