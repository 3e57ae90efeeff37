"""The pod's bundle coordinator (runs in the supervisor process, once per pod).

It takes bundle requests (admin API, start-up settings, the refresher), fetches and validates
them off the request path, and records the result as the pod's desired bundle, which every
worker then applies (see :mod:`rankswap_ranker.convergence`). Requests are handled one at a
time; a request that arrives during a load replaces any request still waiting (the newest
intent wins). A failed load changes nothing that serves: the error is kept for the admin state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rankswap.artifacts import (
    ArtifactError,
    ArtifactURI,
    InvalidURI,
    StoreUnavailable,
    UnsafePath,
    parse_artifact_uri,
    parse_uri,
    resolve_within,
)
from rankswap.cohorts import CohortAssignment
from rankswap.podstate import (
    BundleRequestState,
    BundleState,
    CohortState,
    DesiredState,
    LoadError,
    PodState,
    RefresherState,
    TargetState,
    WorkerCohort,
    WorkerState,
    pod_converged,
    pod_ready,
)
from rankswap_ranker import logs
from rankswap_ranker.bundle import Bundle, BundleRef, utc_now_iso
from rankswap_ranker.cache import CacheKeeper
from rankswap_ranker.convergence import PodView, RunDir
from rankswap_ranker.errors import (
    BadBundleRequest,
    BundleIncompatible,
    URINotAllowed,
    error_record,
    translate,
)
from rankswap_ranker.metrics import RankerMetrics
from rankswap_ranker.shadow import read_pod_comparisons

log = logging.getLogger("rankswap.ranker.coordinator")

Source = Literal["admin", "settings", "startup", "refresher", "restart"]
Resolver = Callable[[str, str], BundleRef]
Validator = Callable[[BundleRef], Bundle]


def check_bundle_uris(model_uri: str, features_uri: str, allowed_roots: list[ArtifactURI]) -> None:
    """Raise BadBundleRequest / URINotAllowed unless both URIs could ever be loaded."""
    for want, uri in (("model", model_uri), ("features", features_uri)):
        try:
            loc = parse_uri(uri)
            ref = parse_artifact_uri(uri)
        except InvalidURI as exc:
            raise BadBundleRequest(f"{want}_uri: {exc}") from exc
        if ref.kind != want:
            raise BadBundleRequest(f"{want}_uri: {uri!r} is a {ref.kind} path, not a {want} path")
        if not any(_within(loc, root) for root in allowed_roots):
            allowed = ", ".join(str(r) for r in allowed_roots) or "(none configured)"
            raise URINotAllowed(f"{want}_uri: {uri!r} is outside the allowed roots: {allowed}")


def _within(loc: ArtifactURI, root: ArtifactURI) -> bool:
    """``loc`` is below ``root`` as written and, for file://, with symlinks resolved too (a
    link inside an allowed root must not lead out of it; the fetch checks the store root)."""
    if not loc.is_within(root):
        return False
    if loc.scheme != "file":
        return True
    try:
        resolve_within(Path(root.path), loc.path[len(root.path) :].strip("/"), where=str(loc))
    except UnsafePath:
        return False
    return True


def is_latest(uri: str) -> bool:
    try:
        return parse_artifact_uri(uri).is_latest
    except InvalidURI:
        return False


@dataclass(frozen=True)
class CohortRequest:
    """The cohort part of an ask: the bundle serving ``assignment``'s tenants instead."""

    model_uri: str
    features_uri: str
    assignment: CohortAssignment

    def public(self) -> dict[str, Any]:
        return {
            "model_uri": self.model_uri,
            "features_uri": self.features_uri,
            "assignment": self.assignment.model_dump(mode="json"),
        }


@dataclass
class BundleRequest:
    """One ask for a bundle: the URIs as given (a ``latest/`` URI stays ``latest/``)."""

    request_id: int
    model_uri: str
    features_uri: str
    source: Source
    refresh_interval_s: float | None = None
    at: str = field(default_factory=utc_now_iso)
    expect_versions: tuple[str, str] | None = None
    """The (model, features) content versions the URIs must hold (a start-up bundle is pinned
    by the operator); None takes whatever they hold."""
    cohort: CohortRequest | None = None

    def public(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "model_uri": self.model_uri,
            "features_uri": self.features_uri,
            "cohort": self.cohort.public() if self.cohort is not None else None,
            "source": self.source,
            "refresh_interval_s": self.refresh_interval_s,
            "at": self.at,
        }


class Coordinator:
    def __init__(
        self,
        run_dir: RunDir,
        pod: PodView,
        metrics: RankerMetrics,
        *,
        allowed_roots: list[ArtifactURI],
        resolver: Resolver,
        validator: Validator,
        nice: int = 0,
        cache: CacheKeeper | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.pod = pod
        self.metrics = metrics
        self.allowed_roots = allowed_roots
        self._resolver = resolver
        self._validator = validator
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="bundle-loader",
            initializer=_lower_priority,
            initargs=(nice,),
        )
        self._lock = threading.Lock()
        self._next_id = 1
        self._pending: BundleRequest | None = None
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.requested: BundleRequest | None = None
        self.loading: BundleRequest | None = None
        self.target: BundleRef | None = None
        """The validated desired bundle (``state().target``); ``state().desired`` is the request."""
        self.target_cohort: tuple[BundleRef, CohortAssignment] | None = None
        """The validated cohort of the target (``state().cohort``), if any."""
        self.desired_seq = 0
        self.desired_request_id: int | None = None
        self.last_error: dict[str, Any] | None = None
        self.last_load: dict[str, Any] | None = None
        self._validated: set[str] = set()
        self._cache = cache
        self._recover()

    def _recover(self) -> None:
        """After a container restart in the same pod, resume the recorded desired bundle."""
        doc = self.run_dir.read_desired()
        if doc is None:
            return
        self.target = BundleRef.of(doc.bundle)
        self.desired_seq = doc.seq
        self._validated.add(self.target.bundle_id)
        cohort: CohortRequest | None = None
        if doc.cohort is not None:
            cref = BundleRef.of(doc.cohort.bundle)
            self.target_cohort = (cref, doc.cohort.assignment)
            self._validated.add(cref.bundle_id)
            cohort = CohortRequest(cref.model.uri, cref.features.uri, doc.cohort.assignment)
        if self._cache is not None:
            self._cache.desired(
                self.target, *([self.target_cohort[0]] if self.target_cohort else [])
            )
        self.desired_request_id = 0
        self.requested = BundleRequest(
            0, self.target.model.uri, self.target.features.uri, "restart", cohort=cohort
        )

    # Requests -------------------------------------------------------------------------------

    def request(
        self,
        model_uri: str,
        features_uri: str,
        source: Source,
        *,
        refresh_interval_s: float | None = None,
        expect_versions: tuple[str, str] | None = None,
        cohort: CohortRequest | None = None,
    ) -> BundleRequest:
        """Record a desired bundle (checked against the allowed roots) and wake the loader.

        A ``refresher`` request reloads the current desired URIs (and cohort); any other
        replaces them. With ``expect_versions`` the load fails unless the URIs hold exactly
        those versions. With ``cohort`` its tenants are served by the cohort's bundle."""
        check_bundle_uris(model_uri, features_uri, self.allowed_roots)
        if cohort is not None:
            check_bundle_uris(cohort.model_uri, cohort.features_uri, self.allowed_roots)
        with self._lock:
            if source == "refresher" and self.requested is not None:
                refresh_interval_s = self.requested.refresh_interval_s
                cohort = self.requested.cohort
            req = BundleRequest(
                self._next_id,
                model_uri,
                features_uri,
                source,
                refresh_interval_s,
                expect_versions=expect_versions,
                cohort=cohort,
            )
            self._next_id += 1
            if source != "refresher":
                self.requested = req
            self._pending = req
        logs.event(log, logging.INFO, "bundle requested", **req.public())
        if self._loop is not None and self._wakeup is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)  # callers may be threads
        return req

    async def run(self) -> None:
        """Handle requests one at a time, until cancelled."""
        self._wakeup = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._pending is not None:
            self._wakeup.set()
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while await self._loop.run_in_executor(self._executor, self.process_pending):
                    pass
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def process_pending(self) -> bool:
        """Load the waiting request, if any (blocking; the loader thread). True if there was one."""
        with self._lock:
            req, self._pending = self._pending, None
            self.loading = req
        if req is None:
            return False
        try:
            self.load_now(req)
        except Exception as exc:  # a bug or a full disk must not stop the loader for good
            log.exception("bundle request failed unexpectedly")
            self._record_failure(req, "record", exc, 0.0)
        return True

    def load_now(self, req: BundleRequest) -> BundleRef | None:
        """Resolve and validate ``req``, then record it as desired (blocking; loader thread)."""
        self.loading = req
        try:
            return self._load(req)
        finally:
            self.loading = None

    def _load(self, req: BundleRequest) -> BundleRef | None:
        t0 = time.perf_counter()
        stage = "fetch"
        try:
            ref = self._resolver(req.model_uri, req.features_uri)
            _check_pinned(req, ref)
            cohort: tuple[BundleRef, CohortAssignment] | None = None
            if req.cohort is not None:
                cref = self._resolver(req.cohort.model_uri, req.cohort.features_uri)
                if cref.bundle_id == ref.bundle_id:
                    raise BadBundleRequest(
                        f"cohort: the cohort bundle {cref.bundle_id} is the pod's bundle itself"
                    )
                cohort = (cref, req.cohort.assignment)
            t1 = time.perf_counter()
            stage = "validate"
            for one in (ref, *([cohort[0]] if cohort is not None else [])):
                if one.bundle_id not in self._validated:
                    bundle = self._validator(one)
                    del bundle  # validated; the supervisor does not serve
                    self._validated.add(one.bundle_id)
            t2 = time.perf_counter()
        except Exception as exc:
            self._record_failure(req, stage, exc, time.perf_counter() - t0)
            self._prune_cache()
            return None
        self.metrics.loads.labels("resolve").inc()
        self.metrics.load_duration.labels("resolve").observe(t2 - t0)
        want_cohort = _worker_cohort(cohort)
        changed = (
            self.target is None
            or self.target.bundle_id != ref.bundle_id
            or _worker_cohort(self.target_cohort) != want_cohort
        )
        # The same bundle again: rewrite it anyway if a worker does not serve it (a worker
        # that failed to load it gets another chance; the others only note the new seq).
        lagging = any(
            w.active is None or w.active.bundle_id != ref.bundle_id or w.cohort != want_cohort
            for w in self.pod.worker_states()
        )
        with self._lock:
            if changed or lagging:
                self.run_dir.write_desired(
                    self.desired_seq + 1, ref, request_id=req.request_id, cohort=cohort
                )
                self.desired_seq += 1
            self.target = ref
            self.target_cohort = cohort
            self.desired_request_id = req.request_id
            if (
                self.last_error is not None
                and self.last_error.get("request_id", 0) <= req.request_id
            ):
                self.last_error = None
        self.last_load = {
            "request_id": req.request_id,
            "bundle_id": ref.bundle_id,
            "changed": changed,
            "fetch_s": round(t1 - t0, 4),
            "validate_s": round(t2 - t1, 4),
            "total_s": round(t2 - t0, 4),
            "finished_at": utc_now_iso(),
        }
        logs.event(log, logging.INFO, "bundle desired", seq=self.desired_seq, **self.last_load)
        if self._cache is not None and changed:
            self._log_pruned(self._cache.desired(ref, *([cohort[0]] if cohort else [])))
        return ref

    def _prune_cache(self) -> None:
        """After a failed load: drop what it downloaded (nothing desired needs it)."""
        if self._cache is not None:
            self._log_pruned(self._cache.prune())

    @staticmethod
    def _log_pruned(removed: list[Any]) -> None:
        if removed:
            logs.event(
                log, logging.INFO, "pruned the artifact cache", removed=[str(p) for p in removed]
            )

    def _record_failure(
        self, req: BundleRequest, stage: str, exc: Exception, seconds: float
    ) -> None:
        err = translate(exc)
        self.metrics.load_failures.labels("resolve", err.code).inc()
        self.metrics.load_duration.labels("resolve").observe(seconds)
        self.last_error = {
            **error_record(exc),
            "stage": stage,
            **req.public(),
            "failed_at": utc_now_iso(),
        }
        logs.event(
            log,
            logging.ERROR,
            "bundle load failed; the active bundle keeps serving",
            **self.last_error,
        )

    @property
    def busy(self) -> bool:
        """A load is running or waiting."""
        return self.loading is not None or self._pending is not None

    # State ----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """:meth:`pod_state` as its JSON document."""
        return self.pod_state().model_dump(mode="json")

    def pod_state(self) -> PodState:
        """The pod's state as the admin API reports it (see docs/RANKER.md, "Reading the state").

        ``desired`` is the bundle the pod was last asked for (URIs as given) and how that ask
        went; ``target`` is the validated bundle every worker converges on; ``active`` is the
        bundle all live workers serve (null while they differ); ``warm`` the bundles kept loaded
        for an immediate switch back.
        """
        workers = self.pod.worker_states()
        live = [w for w in workers if w.alive]
        target = self.target
        target_id = target.bundle_id if target is not None else None
        actives = {w.active.bundle_id if w.active else None for w in live}
        active = None
        if live and len(actives) == 1 and None not in actives:
            active = live[0].active
        warm: dict[str, BundleState] = {}
        for w in live:
            for b in w.warm:
                if b.bundle_id != (active.bundle_id if active else None):
                    warm.setdefault(b.bundle_id, b)
        requested, loading = self.requested, self.loading
        desired: DesiredState | None = None
        worker_error = self._worker_error(live)
        if requested is not None:
            failed_id = (self.last_error or {}).get("request_id", -1)
            loaded_id = self.desired_request_id if target is not None else None
            bundle: str | None = None
            status: Literal["pending", "loading", "loaded", "failed"]
            if loading is not None or self._pending is not None:
                status = "loading"
            elif failed_id >= requested.request_id and (loaded_id is None or failed_id > loaded_id):
                status = "failed"
            elif loaded_id is not None and loaded_id >= requested.request_id:
                # Validated by the supervisor; "failed" still if a worker could not apply it.
                status = "failed" if worker_error else "loaded"
                bundle = target_id
            else:
                status = "pending"
            desired = DesiredState(**requested.public(), status=status, bundle_id=bundle)
        last_error = self.last_error or worker_error
        cohort = self.target_cohort
        return PodState(
            workers_expected=self.pod.workers,
            ready=pod_ready(workers),
            converged=pod_converged(
                workers, self.pod.workers, target_id, self.desired_seq, _worker_cohort(cohort)
            ),
            desired=desired,
            loading=BundleRequestState(**loading.public()) if loading is not None else None,
            target=(
                TargetState(
                    seq=self.desired_seq,
                    request_id=self.desired_request_id,
                    **target.public().model_dump(),
                )
                if target is not None
                else None
            ),
            active=active,
            cohort=(
                CohortState(
                    bundle=cohort[0].public(),
                    assignment=cohort[1],
                    fingerprint=cohort[1].fingerprint,
                )
                if cohort is not None
                else None
            ),
            warm=list(warm.values()),
            workers=workers,
            last_error=LoadError.model_validate(last_error) if last_error else None,
            last_load=self.last_load,
            shadow=read_pod_comparisons(self.run_dir, self.pod.workers),
        )

    def _worker_error(self, live: list[WorkerState]) -> dict[str, Any] | None:
        """A worker that failed to apply the current target (the supervisor validated it)."""
        target = self.target
        if target is None:
            return None
        for w in live:
            err = w.last_error
            if err is not None and err.seq == self.desired_seq:
                return {
                    **err.model_dump(exclude_none=True),
                    "stage": f"worker {w.slot}",
                    "model_uri": self.requested.model_uri if self.requested else target.model.uri,
                    "features_uri": (
                        self.requested.features_uri if self.requested else target.features.uri
                    ),
                }
        return None


def _worker_cohort(cohort: tuple[BundleRef, CohortAssignment] | None) -> WorkerCohort | None:
    """What a worker serving ``cohort`` reports (:class:`rankswap.podstate.WorkerCohort`)."""
    if cohort is None:
        return None
    return WorkerCohort(bundle_id=cohort[0].bundle_id, fingerprint=cohort[1].fingerprint)


def _check_pinned(req: BundleRequest, ref: BundleRef) -> None:
    """BundleIncompatible unless ``ref`` holds the versions ``req`` was pinned to."""
    want = req.expect_versions
    got = (ref.model.version, ref.features.version)
    if want is not None and got != want:
        raise BundleIncompatible(
            f"the URIs hold model {got[0]} + features {got[1]}, not the pinned "
            f"model {want[0]} + features {want[1]}"
        )


def _lower_priority(nice: int) -> None:
    if nice:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


class Refresher:
    """The seeds' polling design: follow ``latest/`` URIs of the requested bundle.

    Every ``interval_s`` it reads the manifest of each ``latest/`` URI in the current request;
    when a version differs from the desired bundle's, it asks the coordinator to load the same
    URIs again (which resolves them to the new content). A dated URI pins its version. A
    version that failed to load is not retried until the content changes again (or the failure
    was the store being unavailable).
    """

    def __init__(
        self,
        coordinator: Coordinator,
        interval_s: float,
        read_version: Callable[[str], str],
    ) -> None:
        self.coordinator = coordinator
        self.interval_s = interval_s
        self._read_version = read_version
        self.last_poll_at: str | None = None
        self.last_error: dict[str, Any] | None = None
        self._tried: dict[tuple[str, str], tuple[str, str]] = {}

    def current_interval_s(self) -> float:
        req = self.coordinator.requested
        if req is not None and req.refresh_interval_s:
            return req.refresh_interval_s
        return self.interval_s

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = time.monotonic()
        while True:
            await asyncio.sleep(min(0.5, self.interval_s))
            if time.monotonic() - last < self.current_interval_s():
                continue
            last = time.monotonic()
            try:
                await loop.run_in_executor(None, self.poll_once)
            except Exception:  # keep polling; the next poll may succeed
                log.exception("refresher poll failed")

    def poll_once(self) -> bool:
        """One poll; True when it asked for a reload."""
        c = self.coordinator
        req, desired = c.requested, c.target
        if req is None or c.busy:
            return False
        follow = [u for u in (req.model_uri, req.features_uri) if is_latest(u)]
        if not follow:
            return False
        self.last_poll_at = utc_now_iso()
        try:
            model_v = self._read_version(req.model_uri)
            features_v = self._read_version(req.features_uri)
        except ArtifactError as exc:
            self.last_error = {**error_record(exc), "at": self.last_poll_at}
            logs.event(log, logging.WARNING, "refresher cannot read a manifest", **self.last_error)
            return False
        self.last_error = None
        uris = (req.model_uri, req.features_uri)
        versions = (model_v, features_v)
        if desired is not None and (desired.model.version, desired.features.version) == versions:
            return False
        failed = c.last_error
        if (
            self._tried.get(uris) == versions
            and failed is not None
            and (failed.get("model_uri"), failed.get("features_uri")) == uris
            and failed.get("type") != StoreUnavailable.__name__
        ):
            return False  # this content failed for good; wait until it changes
        self._tried[uris] = versions
        logs.event(
            log,
            logging.INFO,
            "latest changed; reloading",
            model_version=model_v,
            features_version=features_v,
        )
        c.request(req.model_uri, req.features_uri, "refresher")
        return True

    def state(self) -> RefresherState:
        req = self.coordinator.requested
        return RefresherState(
            interval_s=self.current_interval_s(),
            following=[u for u in (req.model_uri, req.features_uri) if is_latest(u)] if req else [],
            last_poll_at=self.last_poll_at,
            last_error=LoadError.model_validate(self.last_error) if self.last_error else None,
        )
