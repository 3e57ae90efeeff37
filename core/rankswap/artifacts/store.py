"""Byte stores behind artifact URIs: the local filesystem and any S3 API (AWS, MinIO, moto).

A store is addressed by an :class:`ArtifactURI`; keys are URIs below it. Both back ends raise
only :mod:`rankswap.artifacts.errors` exceptions: callers never see ``OSError`` or botocore errors.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rankswap.artifacts.errors import ArtifactNotFound, StoreUnavailable
from rankswap.artifacts.uri import ArtifactURI

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
"""errno values of a full local filesystem (no space, no inodes, over quota)."""


class Store(Protocol):
    """What the artifact contract needs from a back end.

    ``download`` lets an ``OSError`` whose errno is in :data:`DISK_FULL` through as it is: the
    destination is full, which says nothing about the store; the caller names the local path.
    """

    def read(self, uri: ArtifactURI, *, limit: int | None = None) -> bytes:
        """The object's bytes; with ``limit``, at most ``limit + 1`` of them (so a caller can
        tell "too large" without reading an unbounded object into memory)."""
        ...

    def write(self, uri: ArtifactURI, data: bytes) -> None: ...
    def upload(self, uri: ArtifactURI, source: Path) -> None: ...
    def download(self, uri: ArtifactURI, dest: Path) -> None: ...
    def exists(self, uri: ArtifactURI) -> bool: ...
    def list(self, uri: ArtifactURI) -> list[ArtifactURI]:
        """Every object below ``uri`` (recursively)."""
        ...

    def delete(self, uri: ArtifactURI) -> None: ...


def umask() -> int:
    """The process umask, read without changing it (Linux), else by setting it back at once."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status", "rb") as fh:
            line = next(ln for ln in fh if ln.startswith(b"Umask:"))
        return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a published or cached file: ``0666`` under the umask (0644 under 022)."""
    return 0o666 & ~umask()


def folder_mode() -> int:
    """Mode of a published or cached folder: ``0777`` under the umask (0755 under 022)."""
    return 0o777 & ~umask()


class FileStore:
    """``file://`` URIs. Writes go to a temporary file first and are renamed into place.

    Files get the usual permissions (``0666`` under the process umask; ``mkstemp`` alone would
    give ``0600``), so a reader running as another user (the ranker's uid 10001 on a volume the
    training job wrote) can read them.
    """

    @contextlib.contextmanager
    def _io(self, uri: ArtifactURI, *, local_dest: bool = False) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"{uri}: not found") from exc
        except OSError as exc:
            if local_dest and exc.errno in DISK_FULL:
                raise  # the download's destination is full, not the store
            raise StoreUnavailable(f"{uri}: {exc.strerror or exc}") from exc

    def read(self, uri: ArtifactURI, *, limit: int | None = None) -> bytes:
        with self._io(uri), open(uri.path, "rb") as fh:
            return fh.read(-1 if limit is None else limit + 1)

    def write(self, uri: ArtifactURI, data: bytes) -> None:
        with self._io(uri):
            target = Path(uri.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    os.fchmod(fh.fileno(), file_mode())
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise

    def upload(self, uri: ArtifactURI, source: Path) -> None:
        with self._io(uri):
            target = Path(uri.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    os.fchmod(fh.fileno(), file_mode())
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise

    def download(self, uri: ArtifactURI, dest: Path) -> None:
        with self._io(uri, local_dest=True):
            shutil.copyfile(uri.path, dest)

    def exists(self, uri: ArtifactURI) -> bool:
        return Path(uri.path).is_file()

    def list(self, uri: ArtifactURI) -> list[ArtifactURI]:
        root = Path(uri.path)
        if not root.is_dir():
            return []
        found: list[ArtifactURI] = []
        with self._io(uri):
            # Symlinked folders are not entered: what is listed may be deleted, and deleting
            # through a symlink would remove files outside the store.
            for folder, _dirs, names in os.walk(root, followlinks=False):
                found.extend(
                    ArtifactURI("file", "", os.path.join(folder, name))
                    for name in names
                    if not name.startswith(".tmp-")
                )
        return sorted(found)

    def delete(self, uri: ArtifactURI) -> None:
        with self._io(uri), contextlib.suppress(FileNotFoundError):
            os.unlink(uri.path)


@lru_cache(maxsize=1)
def _s3_client() -> S3Client:
    import boto3
    from botocore.config import Config

    # Endpoint, region and credentials come from the standard AWS settings
    # (AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, profiles, IRSA, ...).
    # Short timeouts: an unreachable store must fail fast and clearly, not hang a rollout.
    config = Config(
        connect_timeout=float(os.environ.get("RANKSWAP_S3_CONNECT_TIMEOUT", "3")),
        read_timeout=float(os.environ.get("RANKSWAP_S3_READ_TIMEOUT", "30")),
        retries={
            "max_attempts": int(os.environ.get("RANKSWAP_S3_MAX_ATTEMPTS", "3")),
            "mode": "standard",
        },
    )
    return boto3.session.Session().client("s3", config=config)


def reset_s3_client() -> None:
    """Forget the cached client (after changing AWS settings in the environment)."""
    _s3_client.cache_clear()


class S3Store:
    """``s3://bucket/prefix`` URIs through boto3."""

    @contextlib.contextmanager
    def _io(self, uri: ArtifactURI) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ArtifactNotFound(f"{uri}: not found") from exc
            if code == "NoSuchBucket":
                raise ArtifactNotFound(f"{uri}: bucket {uri.bucket!r} does not exist") from exc
            raise StoreUnavailable(f"{uri}: S3 error {code}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"{uri}: S3 unreachable: {exc}") from exc

    def read(self, uri: ArtifactURI, *, limit: int | None = None) -> bytes:
        with self._io(uri):
            body = _s3_client().get_object(Bucket=uri.bucket, Key=uri.path)["Body"]
            try:
                return body.read() if limit is None else body.read(limit + 1)
            finally:
                body.close()

    def write(self, uri: ArtifactURI, data: bytes) -> None:
        with self._io(uri):
            _s3_client().put_object(Bucket=uri.bucket, Key=uri.path, Body=data)

    def upload(self, uri: ArtifactURI, source: Path) -> None:
        with self._io(uri):
            _s3_client().upload_file(str(source), uri.bucket, uri.path)

    def download(self, uri: ArtifactURI, dest: Path) -> None:
        with self._io(uri):
            _s3_client().download_file(uri.bucket, uri.path, str(dest))

    def exists(self, uri: ArtifactURI) -> bool:
        try:
            with self._io(uri):
                _s3_client().head_object(Bucket=uri.bucket, Key=uri.path)
        except ArtifactNotFound:
            return False
        return True

    def list(self, uri: ArtifactURI) -> list[ArtifactURI]:
        prefix = uri.path.rstrip("/") + "/" if uri.path else ""
        found: list[ArtifactURI] = []
        with self._io(uri):
            pages = (
                _s3_client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=uri.bucket, Prefix=prefix)
            )
            for page in pages:
                found.extend(
                    ArtifactURI("s3", uri.bucket, obj["Key"]) for obj in page.get("Contents", [])
                )
        return sorted(found)

    def delete(self, uri: ArtifactURI) -> None:
        with self._io(uri):
            _s3_client().delete_object(Bucket=uri.bucket, Key=uri.path)


def store_for(uri: ArtifactURI) -> Store:
    return FileStore() if uri.scheme == "file" else S3Store()
