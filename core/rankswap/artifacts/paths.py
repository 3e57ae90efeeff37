"""The one check for every name that becomes a path or a key: manifest entries, cache folders.

Everything a manifest says is written by whoever can write to the store, so it is hostile until
checked. Two checks, used by every reader and writer (publish, fetch into a cache, the operator's
manifest reads, cache pruning) for file:// and s3:// alike:

* :func:`check_relpath`: a name is a relative POSIX path of normal components — not absolute,
  no ``..``, no empty or ``.`` component, no backslash, NUL or other control character, at most
  :data:`MAX_COMPONENT_BYTES` per component, :data:`MAX_DEPTH` components and
  :data:`MAX_PATH_CHARS` in all. Applied to the text, so an S3 key gets the same rule as a file.
* :func:`resolve_within`: a local path with every symlink resolved must stay inside its folder
  (itself resolved); a symlink that leaves it is refused, one that stays inside is followed.

Both raise :class:`~rankswap.artifacts.errors.UnsafePath`, naming the entry and where it came from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from rankswap.artifacts.errors import UnsafePath

MAX_PATH_CHARS: Final = 1024
MAX_COMPONENT_BYTES: Final = 255
MAX_DEPTH: Final = 32
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def check_relpath(rel: object, *, where: str, what: str = "entry") -> str:
    """``rel`` itself if it is a safe relative POSIX path, else :class:`UnsafePath`.

    ``where`` says where the name was read (a URI), ``what`` what it is (``files entry``,
    ``content_dir``): both go into the message, with the name itself.
    """
    reason = _problem(rel)
    if reason is not None:
        raise UnsafePath(f"{where}: {what} {rel!r} refused: {reason}", file=str(rel))
    assert isinstance(rel, str)
    return rel


def check_component(name: object, *, where: str, what: str) -> str:
    """Like :func:`check_relpath`, for a name that must be one component (no ``/``)."""
    rel = check_relpath(name, where=where, what=what)
    if "/" in rel:
        raise UnsafePath(f"{where}: {what} {rel!r} refused: must not contain '/'", file=rel)
    return rel


def _problem(rel: object) -> str | None:
    if not isinstance(rel, str):
        return "not a string"
    if not rel:
        return "empty"
    if len(rel) > MAX_PATH_CHARS:
        return f"longer than {MAX_PATH_CHARS} characters"
    if rel.startswith("/"):
        return "an absolute path"
    bad = _CONTROL.search(rel)
    if bad is not None:
        return "contains a backslash" if bad.group() == "\\" else "contains a control character"
    parts = rel.split("/")
    if len(parts) > MAX_DEPTH:
        return f"more than {MAX_DEPTH} components"
    for part in parts:
        if part in ("", ".", ".."):
            return f"has a {part!r} component" if part else "has an empty component"
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            return f"a component is longer than {MAX_COMPONENT_BYTES} bytes"
    return None


def resolve_within(root: Path, rel: str = "", *, where: str, what: str = "entry") -> Path:
    """``root / rel`` with every symlink resolved; :class:`UnsafePath` unless inside ``root``.

    ``rel`` is checked with :func:`check_relpath` first (``""`` stands for ``root`` itself).
    ``root`` is resolved too, so a root that is itself a symlink (a mounted volume) is fine.
    Paths that do not exist yet are resolved as far as they exist.
    """
    if rel:
        check_relpath(rel, where=where, what=what)
    base = root.resolve()
    target = (root / rel).resolve() if rel else base
    if target != base and not target.is_relative_to(base):
        raise UnsafePath(
            f"{where}: {what} {rel or str(root)!r} refused: resolves to {target}, outside {base}"
            " (a symlink that leaves its folder)",
            file=rel or str(root),
        )
    return target
