"""Artifact URIs: ``file:///abs/path`` (embedded default) and ``s3://bucket/prefix``."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from rankswap.artifacts.errors import InvalidURI

Scheme = Literal["file", "s3"]


@dataclass(frozen=True, order=True)
class ArtifactURI:
    """A parsed location. ``path`` has no leading or trailing slash for s3, and is absolute for file."""

    scheme: Scheme
    bucket: str
    path: str

    def __str__(self) -> str:
        if self.scheme == "file":
            return "file://" + self.path
        return f"s3://{self.bucket}/{self.path}" if self.path else f"s3://{self.bucket}"

    def join(self, *parts: str) -> ArtifactURI:
        clean = [p.strip("/") for p in parts if p.strip("/")]
        return ArtifactURI(
            self.scheme, self.bucket, posixpath.join(self.path, *clean) if clean else self.path
        )

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> ArtifactURI:
        return ArtifactURI(self.scheme, self.bucket, posixpath.dirname(self.path.rstrip("/")))

    def is_within(self, root: ArtifactURI) -> bool:
        """True if this location is ``root`` or below it (compared segment by segment)."""
        if (self.scheme, self.bucket) != (root.scheme, root.bucket):
            return False
        mine = [p for p in self.path.split("/") if p]
        theirs = [p for p in root.path.split("/") if p]
        return mine[: len(theirs)] == theirs


def parse_uri(uri: str) -> ArtifactURI:
    """Parse and normalise an artifact URI, or raise :class:`InvalidURI` saying what is accepted."""
    if not isinstance(uri, str) or not uri:
        raise InvalidURI("empty artifact URI; expected file:///abs/path or s3://bucket/prefix")
    parts = urlsplit(uri)
    if parts.query or parts.fragment:
        raise InvalidURI(f"{uri!r}: query strings and fragments are not allowed in artifact URIs")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidURI(f"{uri!r}: file URIs need an absolute path: file:///abs/path")
        path = posixpath.normpath(unquote(parts.path))
        if not path.startswith("/"):
            raise InvalidURI(f"{uri!r}: file URIs need an absolute path: file:///abs/path")
        if ".." in path.split("/"):
            raise InvalidURI(f"{uri!r}: '..' is not allowed in artifact URIs")
        return ArtifactURI("file", "", path)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise InvalidURI(f"{uri!r}: s3 URIs need a bucket: s3://bucket/prefix")
        segments = [s for s in unquote(parts.path).split("/") if s]
        if any(s in (".", "..") for s in segments):
            raise InvalidURI(f"{uri!r}: '.' and '..' are not allowed in artifact URIs")
        return ArtifactURI("s3", parts.netloc, "/".join(segments))
    raise InvalidURI(
        f"{uri!r}: unsupported scheme; expected file:///abs/path or s3://bucket/prefix"
    )
