"""Where artifacts live below a store root.

::

    <root>/models/<model-name>/<YYYY-MM-DD>/          manifest.json, model.onnx, ...
    <root>/models/<model-name>/latest/                same content as the newest dated path
    <root>/features/<schema-version>/<YYYY-MM-DD>/    manifest.json, tables
    <root>/features/<schema-version>/latest/
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal

from rankswap.artifacts.errors import InvalidURI
from rankswap.artifacts.manifest import Kind
from rankswap.artifacts.uri import ArtifactURI, parse_uri

LATEST: Final = "latest"
_KIND_DIRS: dict[Kind, str] = {"model": "models", "features": "features"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidURI(
            f"artifact name {name!r} must be 1-63 characters of letters, digits, '.', '_' or '-'"
        )
    return name


def artifact_location(
    root: ArtifactURI, kind: Kind, name: str, when: date | Literal["latest"]
) -> ArtifactURI:
    label = when if isinstance(when, str) else when.isoformat()
    return root.join(_KIND_DIRS[kind], check_name(name), label)


def artifact_uri(root_uri: str, kind: Kind, name: str, when: date | Literal["latest"]) -> str:
    """The URI of one artifact version (a dated path, or ``latest``) below ``root_uri``."""
    return str(artifact_location(parse_uri(root_uri), kind, name, when))


@dataclass(frozen=True)
class ArtifactRef:
    """What an artifact URI says about itself, read from its path alone."""

    root: ArtifactURI
    kind: Kind
    name: str
    label: str  # "latest" or YYYY-MM-DD

    @property
    def is_latest(self) -> bool:
        return self.label == LATEST

    @property
    def as_of(self) -> date | None:
        return None if self.is_latest else date.fromisoformat(self.label)


def parse_artifact_uri(uri: str) -> ArtifactRef:
    """Split ``<root>/<models|features>/<name>/<date|latest>`` into its parts, or raise InvalidURI."""
    loc = parse_uri(uri)
    segments = [s for s in loc.path.split("/") if s]
    if len(segments) < 3 or segments[-3] not in _KIND_DIRS.values():
        raise InvalidURI(
            f"{uri!r} is not an artifact path: expected <root>/models/<name>/<YYYY-MM-DD|latest> "
            "or <root>/features/<schema-version>/<YYYY-MM-DD|latest>"
        )
    kind: Kind = "model" if segments[-3] == "models" else "features"
    label = segments[-1]
    if label != LATEST:
        try:
            date.fromisoformat(label)
        except ValueError as exc:
            raise InvalidURI(f"{uri!r}: last segment must be YYYY-MM-DD or 'latest'") from exc
    root_path = "/".join(segments[:-3])
    root = ArtifactURI(
        loc.scheme, loc.bucket, ("/" + root_path) if loc.scheme == "file" else root_path
    )
    return ArtifactRef(root=root, kind=kind, name=check_name(segments[-2]), label=label)
