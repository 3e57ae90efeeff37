"""How every worker process of a pod converges on one bundle, and how the pod reports it.

Pod-local files in the run folder (an ``emptyDir``), each written atomically (temporary file,
then ``rename``), so a reader sees the old or the new content, never a mix::

    <run_dir>/desired.json          the bundle the pod must serve (supervisor writes, after it
                                    fetched and validated it); ``seq`` grows with each change
    <run_dir>/workers/<slot>.json   each worker's truth: pid, active and warm bundles, applied
                                    ``seq``, last error, last load timings

Each worker runs a :class:`WorkerSync` thread that polls ``desired.json`` and applies it: a
pointer swap when the bundle is active or warm, else a load from the (already verified) cache.
Loads take turns (a pod-wide file lock): while one worker loads, the others serve at full speed.
The admin state and ``/readyz`` read the worker files through :class:`PodView`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from rankswap.cohorts import CohortAssignment
from rankswap.podstate import DesiredBundle, DesiredCohort, WorkerCohort, WorkerState, pod_ready
from rankswap_ranker import logs
from rankswap_ranker.bundle import Bundle, BundleRef, utc_now_iso
from rankswap_ranker.errors import error_record, translate
from rankswap_ranker.metrics import RankerMetrics
from rankswap_ranker.registry import BundleRegistry

log = logging.getLogger("rankswap.ranker.sync")
M = TypeVar("M", bound=BaseModel)


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.warning("unreadable state file", extra={"ctx": {"path": str(path)}})
        return None
    return doc if isinstance(doc, dict) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def desired(self) -> Path:
        return self.root / "desired.json"

    def worker(self, slot: int) -> Path:
        return self.root / "workers" / f"{slot}.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @contextlib.contextmanager
    def load_slot(self) -> Iterator[None]:
        """One bundle load at a time in the pod (an ``flock``), so while one worker loads, the
        other workers keep their cores for requests."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "load.lock").open("a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def read_desired(self) -> DesiredBundle | None:
        return _read_model(self.desired, DesiredBundle)

    def write_desired(
        self,
        seq: int,
        ref: BundleRef,
        *,
        request_id: int | None,
        cohort: tuple[BundleRef, CohortAssignment] | None = None,
    ) -> None:
        doc = DesiredBundle(
            seq=seq,
            request_id=request_id,
            set_at=utc_now_iso(),
            bundle=ref.resolved(),
            cohort=(
                DesiredCohort(bundle=cohort[0].resolved(), assignment=cohort[1])
                if cohort is not None
                else None
            ),
        )
        write_json_atomic(self.desired, doc.model_dump(mode="json"))


def _read_model(path: Path, model: type[M]) -> M | None:
    doc = read_json(path)
    if doc is None:
        return None
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        log.warning("invalid state file", extra={"ctx": {"path": str(path), "error": str(exc)}})
        return None


class PodView:
    """What the worker files say about the whole pod (any process may read it)."""

    def __init__(self, run_dir: RunDir, workers: int) -> None:
        self.run_dir = run_dir
        self.workers = workers

    def worker_states(self) -> list[WorkerState]:
        states = []
        for slot in range(self.workers):
            state = _read_model(self.run_dir.worker(slot), WorkerState) or WorkerState(slot=slot)
            state.alive = state.pid is not None and pid_alive(state.pid)
            states.append(state)
        return states

    def ready(self) -> bool:
        """See :func:`rankswap.podstate.pod_ready`."""
        return pod_ready(self.worker_states())


class LocalPodView(PodView):
    """A pod of one in-process worker (tests, ``create_app`` without a supervisor)."""

    def __init__(self, registry: BundleRegistry[Bundle]) -> None:
        self._registry = registry
        self.workers = 1

    def worker_states(self) -> list[WorkerState]:
        active = self._registry.active
        return [
            WorkerState(
                slot=0,
                pid=os.getpid(),
                alive=True,
                active=active.ref.public() if active else None,
                cohort=worker_cohort(self._registry),
                warm=[b.ref.public() for b in self._registry.warm_bundles()],
            )
        ]


def worker_cohort(registry: BundleRegistry[Bundle]) -> WorkerCohort | None:
    """The cohort a worker's registry routes to, as its state reports it."""
    cohort = registry.cohort
    if cohort is None:
        return None
    return WorkerCohort(
        bundle_id=cohort.bundle.bundle_id, fingerprint=cohort.assignment.fingerprint
    )


Loader = Callable[[BundleRef], Bundle]


class WorkerSync:
    """Applies the pod's desired bundle in this worker process, and reports what it serves."""

    def __init__(
        self,
        run_dir: RunDir,
        slot: int,
        registry: BundleRegistry[Bundle],
        metrics: RankerMetrics,
        loader: Loader,
        *,
        poll_interval_s: float = 0.2,
        nice: int = 0,
    ) -> None:
        self.run_dir = run_dir
        self.slot = slot
        self.registry = registry
        self.metrics = metrics
        self.loader = loader
        self.poll_interval_s = poll_interval_s
        self.nice = nice
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._state: dict[str, Any] = {
            "slot": slot,
            "pid": os.getpid(),
            "started_at": utc_now_iso(),
            "applied_seq": None,
            "accepting": False,
            "loading": None,
            "last_error": None,
            "last_load": None,
            "loads": 0,
            "load_failures": 0,
            "rollbacks": 0,
        }
        self._age_published = 0.0
        self.orphan_check: Callable[[], bool] | None = None
        """Returns True when the supervisor is gone; then ``on_orphan`` runs and sync stops."""
        self.on_orphan: Callable[[], None] | None = None

    def accepting(self) -> None:
        """Record that this worker takes connections from now on (see :func:`rankswap.podstate.pod_ready`)."""
        self._state["accepting"] = True
        self.write_state()

    # Thread ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.write_state()
        self._thread = threading.Thread(target=self._run, name="bundle-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        if self.nice:
            # Linux: niceness is per thread; loads then yield the CPU to request threads.
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        while not self._stop.is_set():
            if self.orphan_check is not None and self.orphan_check():
                log.error("the supervisor is gone; this worker stops")
                if self.on_orphan is not None:
                    self.on_orphan()
                return
            try:
                self.poll_once()
                self._publish_feature_age()
            except Exception:  # keep syncing whatever happens; the error is logged
                log.exception("bundle sync iteration failed")
            self._stop.wait(self.poll_interval_s)

    # One step (also called directly by tests) -----------------------------------------------

    def poll_once(self) -> bool:
        """Apply ``desired.json`` if it changed since the last look; True if it was applied."""
        try:
            st = self.run_dir.desired.stat()
        except FileNotFoundError:
            return False
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        desired = self.run_dir.read_desired()
        if desired is None or desired.seq == self._state["applied_seq"]:
            return False
        self.apply(desired.seq, BundleRef.of(desired.bundle), desired.cohort)
        return True

    def apply(self, seq: int, ref: BundleRef, cohort: DesiredCohort | None = None) -> None:
        """Serve ``ref`` to every tenant, or to every tenant outside ``cohort``, whose tenants
        get the cohort's bundle (a pointer swap when it is loaded, else loaded first)."""
        if not self._apply_main(seq, ref):
            return
        if cohort is None:
            self.registry.set_cohort(None)
        else:
            cref = BundleRef.of(cohort.bundle)
            bundle = self.registry.take_warm(cref.bundle_id)
            if bundle is None:
                self._state["loading"] = cref.bundle_id
                self.write_state()
                try:
                    with self.run_dir.load_slot():
                        bundle = self.loader(cref)
                except Exception as exc:
                    self._failed(seq, cref, exc)
                    return
                self.metrics.loads.labels("activate").inc()
                self._state["loads"] += 1
            self.registry.set_cohort(bundle, cohort.assignment)
            logs.event(
                log,
                logging.INFO,
                "cohort active",
                seq=seq,
                cohort_bundle=cref.bundle_id,
                cohort=cohort.assignment.describe(),
                fingerprint=cohort.assignment.fingerprint,
            )
        self._state.update(applied_seq=seq, loading=None, last_error=None)
        self.write_state()

    def _apply_main(self, seq: int, ref: BundleRef) -> bool:
        """Make ``ref`` the active bundle; False when loading it failed (recorded)."""
        target = ref.bundle_id
        active = self.registry.active
        if active is not None and active.bundle_id == target:
            return True
        started = time.perf_counter()
        swap = self.registry.activate_warm(target)
        if swap is not None:
            self.metrics.rollbacks.inc()
            self._state["rollbacks"] += 1
            self._after_swap(seq, ref, "warm", time.perf_counter() - started, None)
            return True
        self._state["loading"] = target
        self.write_state()
        try:
            with self.run_dir.load_slot():
                bundle = self.loader(ref)
        except Exception as exc:
            self._failed(seq, ref, exc)
            return False
        self.registry.activate(bundle)
        self._after_swap(seq, ref, "load", time.perf_counter() - started, bundle)
        return True

    def _after_swap(
        self, seq: int, ref: BundleRef, how: str, seconds: float, bundle: Bundle | None
    ) -> None:
        previous = self._state.get("active_labels")
        if previous:
            self.metrics.active_bundle.labels(*previous).set(0)
        labels = (
            ref.bundle_id,
            ref.model.name,
            ref.model.version,
            ref.features.name,
            ref.features.version,
        )
        self.metrics.active_bundle.labels(*labels).set(1)
        self._state["active_labels"] = labels
        if how == "load":
            self.metrics.loads.labels("activate").inc()
            self.metrics.load_duration.labels("activate").observe(seconds)
            self._state["loads"] += 1
        self._state.update(applied_seq=seq, loading=None, last_error=None)
        self._state["last_load"] = {
            "bundle_id": ref.bundle_id,
            "how": how,
            "seconds": round(seconds, 4),
            "finished_at": utc_now_iso(),
            **(
                {
                    "features_s": round(bundle.timings.features_s, 4),
                    "session_s": round(bundle.timings.session_s, 4),
                    "smoke_s": round(bundle.timings.smoke_s, 4),
                }
                if bundle is not None
                else {}
            ),
        }
        logs.set_active_bundle(ref.bundle_id)
        self._age_published = 0.0
        self._publish_feature_age()
        self.write_state()
        logs.event(
            log,
            logging.INFO,
            "bundle active",
            how=how,
            seconds=round(seconds, 4),
            seq=seq,
            warm=self.registry.warm_ids(),
        )

    def _failed(self, seq: int, ref: BundleRef, exc: Exception) -> None:
        err = translate(exc)
        self.metrics.load_failures.labels("activate", err.code).inc()
        self._state["load_failures"] += 1
        record = {**error_record(exc), "bundle_id": ref.bundle_id, "seq": seq, "at": utc_now_iso()}
        self._state.update(applied_seq=seq, loading=None, last_error=record)
        self.write_state()
        logs.event(
            log, logging.ERROR, "bundle load failed; the active bundle keeps serving", **record
        )

    def _publish_feature_age(self) -> None:
        now = time.time()
        if now - self._age_published < 1.0:
            return
        active = self.registry.active
        if active is not None:
            self.metrics.feature_age.set(now - active.features_created_at)
        self._age_published = now

    def state(self) -> WorkerState:
        """This worker's truth, as its state file records it (``alive`` is the reader's)."""
        active = self.registry.active
        return WorkerState.model_validate(
            {
                **{k: v for k, v in self._state.items() if k != "active_labels"},
                "active": active.ref.public() if active is not None else None,
                "cohort": worker_cohort(self.registry),
                "warm": [b.ref.public() for b in self.registry.warm_bundles()],
                "updated_at": utc_now_iso(),
            }
        )

    def write_state(self) -> None:
        doc = self.state().model_dump(mode="json", exclude={"alive"})
        write_json_atomic(self.run_dir.worker(self.slot), doc)
