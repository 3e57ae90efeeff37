"""The ranker's processes: one supervisor and N workers per pod.

::

    supervisor (rankswap serve)           workers 0..N-1 (spawned)
    ├── admin API on the admin port       ├── public API on the shared public socket
    ├── coordinator: fetch, verify,       ├── WorkerSync thread: applies desired.json
    │   validate → desired.json           │   (load or pointer swap), writes workers/<i>.json
    ├── refresher: polls latest/ URIs     └── bundles: mmapped features + ONNX session
    └── restarts a worker that dies

The supervisor binds both sockets; workers inherit the public one (the kernel spreads
connections), so the admin port always reaches the supervisor, which speaks for the whole pod.
``<run_dir>/ports.json`` records the bound ports (useful with port 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from rankswap_ranker import logs
from rankswap_ranker.settings import RankerSettings

if TYPE_CHECKING:
    from rankswap.podstate import PodState
    from rankswap_ranker.coordinator import Coordinator, Refresher
    from rankswap_ranker.metrics import RankerMetrics
    from rankswap_ranker.schemas import CohortSpec
    from rankswap_ranker.tracing import TracingConfig

log = logging.getLogger("rankswap.ranker")

RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
"""Delays before restarting a worker that keeps dying: the n-th death in a row waits the n-th."""
WORKER_GRACEFUL_STOP_S = 5
"""After its drain, how long a stopping worker waits for the requests in flight."""
HEALTHY_AFTER_S = 30.0
"""A worker that lived this long was healthy: its next death starts the back-off afresh."""


def restart_delay(
    streak: int, uptime_s: float, *, healthy_after_s: float = HEALTHY_AFTER_S
) -> tuple[float, int]:
    """How long to wait before restarting a worker that died after ``uptime_s`` seconds of
    life, given ``streak`` deaths in a row before it; returns (delay, the new streak).

    Deaths in a row each come soon after their start; a worker that lived ``healthy_after_s``
    or longer resets the streak, so an occasional death costs the shortest delay however many
    came before in the pod's lifetime.
    """
    if uptime_s >= healthy_after_s:
        streak = 0
    return RESTART_BACKOFF_S[min(streak, len(RESTART_BACKOFF_S) - 1)], streak + 1


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


# Worker ---------------------------------------------------------------------------------------


def worker_main(
    settings: RankerSettings,
    slot: int,
    sock: socket.socket,
    parent: int,
    tracing_config: TracingConfig | None = None,
) -> None:
    """Entry point of a worker process (spawned; builds everything itself, its tracer
    provider too: the SDK's export thread belongs to the process that runs it)."""
    from prometheus_client import CollectorRegistry

    from rankswap_ranker import bundle as bundles
    from rankswap_ranker.app import create_app
    from rankswap_ranker.candidates import LazyProductDB
    from rankswap_ranker.convergence import PodView, RunDir, WorkerSync
    from rankswap_ranker.metrics import RankerMetrics
    from rankswap_ranker.protocol import Drain, DrainingServer, EarlySignals, http_protocol
    from rankswap_ranker.registry import BundleRegistry
    from rankswap_ranker.shadow import Shadow, ShadowMetrics, shadow_path

    logs.configure(settings.log_level)
    logs.set_process("worker", slot)
    run_dir = RunDir(settings.effective_run_dir)
    metrics = RankerMetrics(CollectorRegistry())
    registry: BundleRegistry[bundles.Bundle] = BundleRegistry(settings.warm_bundles)
    source = LazyProductDB(settings.database_url)
    sync = WorkerSync(
        run_dir,
        slot,
        registry,
        metrics,
        functools.partial(
            bundles.load,
            intra_op_threads=settings.ort_intra_op_threads,
            prefault=settings.prefault_features,
        ),
        poll_interval_s=settings.worker_poll_interval_s,
        nice=settings.loader_nice,
    )
    shadow = Shadow(
        registry,
        ShadowMetrics(metrics.registry),
        sample_rate=settings.shadow_sample_rate,
        queue_size=settings.shadow_queue_size,
        state_path=shadow_path(run_dir, slot),
        pid=os.getpid(),
    )
    tracing = None
    if tracing_config is not None:
        from rankswap_ranker import spans

        tracing = spans.start(tracing_config, slot)
    app = create_app(
        settings,
        registry,
        source,
        metrics=metrics,
        pod=PodView(run_dir, settings.workers),
        worker_slot=slot,
        shadow=shadow,
        tracing=tracing,
    )
    drain = Drain()
    config = uvicorn.Config(
        app,
        loop="uvloop",
        # JSON rank requests answered by the protocol itself (app.DirectRank; None: tracing on,
        # PostgreSQL or the access log: the ASGI path).
        http=http_protocol(settings.header_timeout_s, drain, direct=app.state.direct),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        lifespan="off",
        access_log=settings.access_log,
        log_config=None,
        timeout_graceful_shutdown=WORKER_GRACEFUL_STOP_S,
        server_header=False,
        # Nothing reads the client address (a Service's traffic carries no X-Forwarded-For
        # worth trusting); without this uvicorn wraps the app in ProxyHeadersMiddleware.
        proxy_headers=False,
    )
    # SIGTERM (from the supervisor): serve on for drain_s with `Connection: close`, then stop.
    early = EarlySignals()
    server = DrainingServer(config, drain, settings.drain_s, early=early)
    sync.orphan_check = lambda: os.getppid() != parent
    sync.on_orphan = lambda: setattr(server, "should_exit", True)
    # Apply the desired bundle before taking connections: a restarted worker must not answer
    # 503 no_active_bundle while the other workers serve (the pod stays ready meanwhile).
    sync.write_state()
    try:
        sync.poll_once()
    except Exception:  # serve anyway (503 until a later poll succeeds); the error is logged
        log.exception("applying the desired bundle at start failed")
    sync.accepting()
    sync.start()
    shadow.start()
    # uvicorn restores the previous handlers and re-raises a captured SIGTERM when it stops:
    # with the default handler that killed the process there, before the clean-up below (the
    # spans still queued were lost). Ours only note it; one that arrives before uvicorn's
    # handlers are in place is acted on once they are (a drain, not a SIGKILL 25 s later).
    early.install()
    try:
        server.run(sockets=[sock])
    finally:
        shadow.stop()
        sync.stop()
        source.close()
        if tracing is not None:
            tracing.shutdown()  # exports the spans still queued
        # The interpreter's exit collects the whole heap (the bundles' tables, the compiled
        # trees): 1.5 s of a stopping pod's time. Nothing of it needs finalising; the atexit
        # hooks (the metrics' last flush) still run.
        gc.freeze()


# Supervisor -----------------------------------------------------------------------------------


class WorkerPool:
    """Starts the workers and restarts any that dies (see :func:`restart_delay`)."""

    def __init__(
        self,
        settings: RankerSettings,
        sock: socket.socket,
        clock: Callable[[], float] = time.monotonic,
        metrics: RankerMetrics | None = None,
        tracing: TracingConfig | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.tracing = tracing
        self.sock = sock
        self.ctx = multiprocessing.get_context("spawn")
        self.clock = clock
        self.procs: dict[int, BaseProcess] = {}
        self.restarts: dict[int, int] = {}
        """Restarts per slot over the pod's lifetime (reported in the admin state)."""
        self._started_at: dict[int, float] = {}
        self._streak: dict[int, int] = {}
        self._due: dict[int, float] = {}
        self.stopping = False
        self._terminated: set[int] = set()

    def start(self, slot: int) -> None:
        proc = self.ctx.Process(
            target=worker_main,
            args=(self.settings, slot, self.sock, os.getpid(), self.tracing),
            name=f"rankswap-ranker-worker-{slot}",
            daemon=False,
        )
        proc.start()
        self.procs[slot] = proc
        self._started_at[slot] = self.clock()
        logs.event(log, logging.INFO, "worker started", worker_slot=slot, worker_pid=proc.pid)

    def start_all(self) -> None:
        for slot in range(self.settings.workers):
            self.start(slot)

    async def watch(self) -> None:
        while not self.stopping:
            await asyncio.sleep(0.5)
            try:
                self.check()
            except Exception:  # keep watching
                log.exception("worker watch failed")

    def check(self) -> None:
        """Schedule the restart of each worker found dead; start those whose delay is over.

        Each slot waits on its own, so one worker's back-off never delays another's restart."""
        from rankswap_ranker.metrics import mark_process_dead

        now = self.clock()
        for slot, proc in list(self.procs.items()):
            if proc.is_alive() or self.stopping:
                continue
            due = self._due.get(slot)
            if due is None:
                uptime = now - self._started_at.get(slot, now)
                delay, self._streak[slot] = restart_delay(self._streak.get(slot, 0), uptime)
                self._due[slot] = now + delay
                logs.event(
                    log,
                    logging.ERROR,
                    "worker died; restarting it",
                    worker_slot=slot,
                    worker_pid=proc.pid,
                    exitcode=proc.exitcode,
                    uptime_s=round(uptime, 1),
                    restart_in_s=delay,
                    restarts=self.restarts.get(slot, 0),
                )
                if proc.pid is not None:
                    mark_process_dead(proc.pid)
            elif now >= due:
                del self._due[slot]
                self.restarts[slot] = self.restarts.get(slot, 0) + 1
                if self.metrics is not None:
                    self.metrics.worker_restarts.inc()
                self.start(slot)

    def terminate(self) -> None:
        """SIGTERM to every worker, once: a second SIGTERM would end a worker's drain at once
        (``protocol.DrainingServer``). No restarts from here on."""
        self.stopping = True
        for proc in self.procs.values():
            if proc.pid is not None and proc.pid not in self._terminated and proc.is_alive():
                self._terminated.add(proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)

    def stop(self, timeout: float | None = None) -> None:
        """``terminate``, then SIGKILL to the workers still alive after ``timeout`` seconds
        (default: their drain plus uvicorn's graceful stop, plus a margin)."""
        if timeout is None:
            timeout = self.settings.drain_s + WORKER_GRACEFUL_STOP_S + 5.0
        self.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(2)


class SupervisorServer(uvicorn.Server):
    """The admin API's server, whose stop signal goes on to the workers at once, so that their
    drain starts when the kubelet's SIGTERM arrives, not after the admin server has stopped."""

    def __init__(self, config: uvicorn.Config, pool: WorkerPool) -> None:
        super().__init__(config)
        self.pool = pool

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.pool.stopping:
            logs.event(log, logging.INFO, "stopping workers", signal=signal.Signals(sig).name)
        self.pool.terminate()
        super().handle_exit(sig, frame)


class PodAdmin:
    """The admin API's backend: the coordinator, the refresher and the worker pool."""

    def __init__(
        self, coordinator: Coordinator, refresher: Refresher, pool: WorkerPool | None
    ) -> None:
        self.coordinator = coordinator
        self.refresher = refresher
        self.pool = pool

    def request_bundle(
        self,
        model_uri: str,
        features_uri: str,
        refresh_interval_s: float | None,
        cohort: CohortSpec | None = None,
    ) -> int:
        from rankswap_ranker.coordinator import CohortRequest

        req = self.coordinator.request(
            model_uri,
            features_uri,
            "admin",
            refresh_interval_s=refresh_interval_s,
            cohort=(
                CohortRequest(cohort.model_uri, cohort.features_uri, cohort.assignment())
                if cohort is not None
                else None
            ),
        )
        return req.request_id

    def state(self) -> PodState:
        return self.coordinator.pod_state().model_copy(
            update={
                "refresher": self.refresher.state(),
                "supervisor_pid": os.getpid(),
                "worker_restarts": (
                    {str(k): v for k, v in self.pool.restarts.items()}
                    if self.pool is not None
                    else None
                ),
            }
        )


def enable_multiprocess_metrics(directory: Path) -> None:
    """Point prometheus_client at a fresh multiprocess folder shared by the pod's processes.

    prometheus_client chooses its value store when it is first imported, so this runs before
    that import (the workers inherit the variable).
    """
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def serve(
    settings: RankerSettings, *, json_logs: bool = True, tracing: TracingConfig | None = None
) -> int:
    """Run the pod's ranker until SIGTERM / SIGINT (``tracing``: each worker's spans, see
    :mod:`rankswap_ranker.tracing`; None: off). Returns the exit code."""
    run_root = settings.effective_run_dir
    run_root.mkdir(parents=True, exist_ok=True)
    enable_multiprocess_metrics(run_root / "metrics")
    from rankswap_ranker.assembly import kernel_cache

    settings.effective_cache_dir.mkdir(parents=True, exist_ok=True)
    kernels_at = kernel_cache(settings.effective_cache_dir)  # before any worker starts
    from rankswap_ranker import metrics as metrics_mod

    logs.configure(settings.log_level, json_lines=json_logs)
    logs.set_process("supervisor")
    logs.event(
        log,
        logging.INFO,
        "effective configuration",
        config=settings.masked(),
        tracing=tracing.public() if tracing is not None else None,
        kernel_cache=None if kernels_at is None else str(kernels_at),
    )
    if settings.read_admin_token() is None:
        logs.event(
            log,
            logging.WARNING,
            "no admin token (RANKSWAP_ADMIN_TOKEN_FILE / RANKSWAP_ADMIN_TOKEN): the admin API "
            "refuses every call",
        )
    if not metrics_mod.multiprocess_enabled():
        raise RuntimeError(
            "prometheus_client was imported before the ranker set PROMETHEUS_MULTIPROC_DIR; "
            "start the ranker with `rankswap serve` or set the variable yourself"
        )
    for stale in (run_root / "workers").glob("*.json"):
        stale.unlink()
    public = bind(settings.public_host, settings.public_port)
    admin = bind(settings.admin_host, settings.admin_port)
    ports = {"public": public.getsockname()[1], "admin": admin.getsockname()[1], "pid": os.getpid()}
    tmp = run_root / ".ports.json.tmp"
    tmp.write_text(json.dumps(ports), encoding="utf-8")
    os.replace(tmp, run_root / "ports.json")
    logs.event(log, logging.INFO, "listening", **ports)
    try:
        import uvloop

        uvloop.run(_supervise(settings, public, admin, tracing))
    finally:
        public.close()
        admin.close()
    gc.freeze()  # the process exits next: skip collecting its heap (see worker_main)
    return 0


async def _supervise(
    settings: RankerSettings,
    public: socket.socket,
    admin: socket.socket,
    tracing: TracingConfig | None = None,
) -> None:
    from prometheus_client import CollectorRegistry

    from rankswap.artifacts import read_manifest
    from rankswap_ranker import bundle as bundles
    from rankswap_ranker.admin import create_admin_app
    from rankswap_ranker.cache import CacheKeeper
    from rankswap_ranker.convergence import PodView, RunDir
    from rankswap_ranker.coordinator import Coordinator, Refresher
    from rankswap_ranker.metrics import RankerMetrics
    from rankswap_ranker.protocol import http_protocol
    from rankswap_ranker.startup import request_first_bundle

    run_dir = RunDir(settings.effective_run_dir)
    cache_dir: Path = settings.effective_cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    metrics = RankerMetrics(CollectorRegistry())
    pod = PodView(run_dir, settings.workers)
    coordinator = Coordinator(
        run_dir,
        pod,
        metrics,
        allowed_roots=settings.allowed_root_uris,
        resolver=lambda m, f: bundles.resolve(m, f, cache_dir),
        validator=functools.partial(
            bundles.load, intra_op_threads=1, compile_trees=False, compile_assembly=False
        ),
        nice=settings.loader_nice,
        cache=CacheKeeper(cache_dir, keep=settings.warm_bundles + 2),
    )
    refresher = Refresher(
        coordinator, settings.refresh_interval_s, lambda uri: read_manifest(uri).version
    )
    if coordinator.target is None:
        request_first_bundle(settings, coordinator)
    pool = WorkerPool(settings, public, metrics=metrics, tracing=tracing)
    pool.start_all()
    server = SupervisorServer(
        uvicorn.Config(
            create_admin_app(settings, PodAdmin(coordinator, refresher, pool)),
            lifespan="off",
            log_config=None,
            access_log=settings.access_log,
            server_header=False,
            proxy_headers=False,
            http=http_protocol(settings.header_timeout_s),
            timeout_keep_alive=settings.keep_alive_timeout_s,
        ),
        pool,
    )
    # uvicorn restores the previous handlers and re-raises a captured signal when it stops:
    # ours only note it, so that the workers are stopped cleanly below.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    tasks = [
        asyncio.create_task(coordinator.run(), name="coordinator"),
        asyncio.create_task(refresher.run(), name="refresher"),
        asyncio.create_task(pool.watch(), name="worker-watch"),
    ]
    try:
        await server.serve(sockets=[admin])
    finally:
        if not pool.stopping:  # the admin server stopped without a signal
            logs.event(log, logging.INFO, "stopping workers")
        pool.terminate()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, pool.stop)
        logs.event(log, logging.INFO, "stopped")
