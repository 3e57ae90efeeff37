"""The start-up bundle: what a pod that starts with no bundle loads by itself.

The operator keeps, per ArtifactVersion, a ConfigMap whose ``startup.json``
(:class:`rankswap.podstate.StartupDocument`) names the desired and the last good bundle; the
ranker Deployment mounts it (``optional: true``) and ``RANKSWAP_STARTUP_FILE`` points at it. A
pod that starts with no recorded desired bundle (not a container restart in the same pod)
loads :meth:`~rankswap.podstate.StartupDocument.startup_bundle` — the last good bundle, pinned
to the content versions the operator confirmed — so it becomes ready even while the operator
is down. The operator, when it runs, still verifies the pod and pushes it the desired bundle.

The file is hostile input like any other: read through :func:`rankswap.artifacts.resolve_within`
(the kubelet projects it as a symlink into the mount's ``..data`` folder; a link that leaves
the mount is refused), at most :data:`rankswap.podstate.STARTUP_MAX_BYTES`, strict schema; its
URIs then pass the same allowed-roots check as an admin push. A missing file is normal (no
ConfigMap yet: the pod waits for the operator); a bad one is logged as one ERROR line and the
pod stays alive and not ready until the operator pushes a bundle.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from rankswap.artifacts import (
    InvalidURI,
    UnsafePath,
    artifact_uri,
    parse_artifact_uri,
    resolve_within,
)
from rankswap.podstate import STARTUP_MAX_BYTES, PinnedRef, StartupDocument
from rankswap_ranker import logs
from rankswap_ranker.errors import RankerError
from rankswap_ranker.settings import RankerSettings

if TYPE_CHECKING:
    from rankswap_ranker.coordinator import Coordinator

log = logging.getLogger("rankswap.ranker.startup")


class StartupFileInvalid(Exception):
    """The start-up file cannot be used (too large, not JSON, wrong schema, unsafe path)."""


@dataclass(frozen=True)
class StartupBundle:
    """What the pod asks its coordinator for: URIs that pin the content, and that content."""

    model_uri: str
    features_uri: str
    versions: tuple[str, str]
    artifact_version: str


def read_startup_file(path: Path) -> StartupDocument | None:
    """The document at ``path``; None when there is none (no ConfigMap mounted yet);
    :class:`StartupFileInvalid` when it is not a valid one."""
    where = f"start-up file {path}"
    try:
        real = resolve_within(path.parent, path.name, where=where, what="file")
    except UnsafePath as exc:
        raise StartupFileInvalid(str(exc)) from exc
    try:
        with real.open("rb") as fh:
            raw = fh.read(STARTUP_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StartupFileInvalid(f"{where}: cannot be read: {exc.strerror or exc}") from exc
    if len(raw) > STARTUP_MAX_BYTES:
        raise StartupFileInvalid(f"{where}: larger than {STARTUP_MAX_BYTES} bytes; not read")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StartupFileInvalid(f"{where}: not UTF-8 JSON ({exc})") from exc
    try:
        return StartupDocument.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise StartupFileInvalid(
            f"{where}: {field}: {first['msg']} ({exc.error_count()} problem(s))"
        ) from None


def pinned_uri(uri: str, version: str) -> str:
    """A URI that holds exactly ``version``: a dated URI as it is; a ``latest/`` URI becomes
    the dated path of the version's date (``latest/`` may have moved on to content nobody has
    verified; the dated path is where that version was published)."""
    ref = parse_artifact_uri(uri)
    if not ref.is_latest:
        return uri
    try:
        when = date.fromisoformat(version[:10])
    except ValueError as exc:
        raise InvalidURI(f"version {version!r} does not start with a date") from exc
    return artifact_uri(str(ref.root), ref.kind, ref.name, when)


def startup_bundle(doc: StartupDocument) -> StartupBundle | None:
    """The bundle a new pod starts on (:meth:`StartupDocument.startup_bundle`), pinned; None
    before any bundle was ever good. :class:`StartupFileInvalid` for URIs that are no artifact
    paths."""
    chosen: PinnedRef | None = doc.startup_bundle()
    if chosen is None:
        return None
    try:
        model_uri = pinned_uri(chosen.model_uri, chosen.model_version)
        features_uri = pinned_uri(chosen.features_uri, chosen.features_version)
    except InvalidURI as exc:
        raise StartupFileInvalid(f"start-up bundle of {doc.artifact_version}: {exc}") from exc
    return StartupBundle(model_uri, features_uri, chosen.versions, doc.artifact_version)


def load_startup(path: Path) -> StartupBundle | None:
    """Read ``path`` and choose; every outcome is one log line. None: nothing to load."""
    try:
        doc = read_startup_file(path)
        bundle = startup_bundle(doc) if doc is not None else None
    except StartupFileInvalid as exc:
        logs.event(
            log,
            logging.ERROR,
            "start-up file refused; waiting for the operator to push a bundle",
            file=str(path),
            error=str(exc),
        )
        return None
    if doc is None:
        logs.event(
            log,
            logging.INFO,
            "no start-up file; waiting for the operator to push a bundle",
            file=str(path),
        )
    elif bundle is None:
        logs.event(
            log,
            logging.INFO,
            "the start-up file names no good bundle yet; waiting for the operator",
            file=str(path),
            artifact_version=doc.artifact_version,
        )
    else:
        logs.event(
            log,
            logging.INFO,
            "loading the start-up bundle (last good)",
            file=str(path),
            artifact_version=bundle.artifact_version,
            model_uri=bundle.model_uri,
            features_uri=bundle.features_uri,
            model_version=bundle.versions[0],
            features_version=bundle.versions[1],
        )
    return bundle


def request_first_bundle(settings: RankerSettings, coordinator: Coordinator) -> None:
    """A pod with no bundle yet: the start-up bundle if the mounted file names one, else the
    settings' URIs, else nothing (the operator pushes one)."""
    startup = load_startup(settings.startup_file) if settings.startup_file else None
    if startup is not None:
        try:
            coordinator.request(
                startup.model_uri, startup.features_uri, "startup", expect_versions=startup.versions
            )
            return
        except RankerError as exc:  # outside the allowed roots, say: not this pod's to load
            logs.event(
                log,
                logging.ERROR,
                "start-up bundle refused; waiting for the operator to push a bundle",
                error=exc.message,
            )
    if settings.model_uri and settings.features_uri:
        coordinator.request(settings.model_uri, settings.features_uri, "settings")
