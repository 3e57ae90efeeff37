"""Prometheus metrics of the ranker.

With several worker processes the public ``/metrics`` (served by whichever worker accepts the
connection) must show the whole pod: the ranker then runs prometheus_client in multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR`` in the pod-local run folder, set by the supervisor before
prometheus_client is first imported; see :func:`rankswap_ranker.server.serve`). In a single process (tests) metrics live
in the :class:`~prometheus_client.CollectorRegistry` given to :class:`RankerMetrics`.

The per-request series (request latency and count, rank CPU, candidates, missing rows, unknown
values) are updated on the hot path through :class:`Deferred`: one append to a queue, counted
and written to the prometheus values in batches — before every exposition, by a flusher thread at
most ``FLUSH_INTERVAL_S`` after an update, and at interpreter exit. In multiprocess mode each
prometheus update is a locked write into the worker's mmap file (3-6 µs; ~8 per request).
"""

from __future__ import annotations

import atexit
import bisect
import logging
import threading
import weakref
from collections import deque
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger("rankswap.ranker.metrics")

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
CANDIDATE_BUCKETS = (0, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)


FLUSH_INTERVAL_S = 0.1
"""Longest time a per-request update waits before another worker's ``/metrics`` shows it."""

IDLE_FLUSHES = 50
"""Intervals in a row with nothing to write after which the flusher thread ends (5 s): a
worker under steady load keeps one flusher instead of starting a thread (and waiting for it to
run) every interval."""


class DeferredSeries:
    """A counter or histogram series' updates not yet written (see :class:`Deferred`)."""

    __slots__ = ("bounds", "counts", "owner", "series", "total")

    def __init__(self, owner: Deferred, series: Any, bounds: tuple[float, ...]) -> None:
        self.owner = owner
        self.series = series
        self.bounds = bounds
        self.total = 0.0
        self.counts = [0] * len(bounds)

    def inc(self, amount: float = 1.0) -> None:
        """``Counter.inc``, deferred."""
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        owner = self.owner
        owner.pending.append((self, amount))
        if not owner.flushing:
            owner.start_flusher()

    def observe(self, amount: float) -> None:
        """``Histogram.observe``, deferred: the same bucket (the first ``amount <= bound``)."""
        owner = self.owner
        owner.pending.append((self, amount))
        if not owner.flushing:
            owner.start_flusher()

    def add(self, amount: float) -> None:
        """Count one update (by :meth:`Deferred.flush` only)."""
        self.total += amount
        bounds = self.bounds
        if bounds:
            i = bisect.bisect_left(bounds, amount)
            if i < len(bounds) and amount <= bounds[i]:  # NaN counts in no bucket, as upstream
                self.counts[i] += 1

    def write(self) -> None:
        """Write what :meth:`add` counted to the prometheus series, and start again."""
        total, counts = self.total, self.counts
        self.total, self.counts = 0.0, [0] * len(self.bounds)
        if not self.bounds:
            self.series.inc(total)
            return
        # prometheus_client has no batched observe: its Histogram child keeps one value per
        # bucket (``_buckets``, non-cumulative, as ``observe`` increments them) and ``_sum``;
        # tests/unit/ranker/test_ranker_metrics.py pins that layout against ``observe``
        self.series._sum.inc(total)
        for value, k in zip(self.series._buckets, counts, strict=True):
            if k:
                value.inc(k)


class Deferred:
    """Per-request counter and histogram updates queued as they come, written in batches.

    :meth:`counter` / :meth:`histogram` wrap a labelled series (``metric.labels(...)``, or an
    unlabelled metric) with the same ``inc`` / ``observe``. An update is one append to a
    queue (no lock: ``deque.append`` and ``popleft`` are atomic); :meth:`flush` counts the
    queued updates per series and writes each series once. It runs before every exposition, in
    a daemon thread at most ``FLUSH_INTERVAL_S`` after an update (the thread ends after
    ``IDLE_FLUSHES`` intervals with nothing queued), and at interpreter exit. Nothing counted
    is dropped; a worker killed with SIGKILL loses at most its last ``FLUSH_INTERVAL_S`` of
    these updates."""

    def __init__(self, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.idle_flushes = IDLE_FLUSHES
        self.lock = threading.Lock()
        self.pending: deque[tuple[DeferredSeries, float]] = deque()
        self.flushing = False
        self._flush_lock = threading.Lock()
        self._series: dict[int, DeferredSeries] = {}
        _LIVE.add(self)

    def counter(self, series: Any) -> DeferredSeries:
        return self._wrap(series, ())

    def histogram(self, series: Any) -> DeferredSeries:
        return self._wrap(series, tuple(series._upper_bounds))

    def _wrap(self, series: Any, bounds: tuple[float, ...]) -> DeferredSeries:
        with self.lock:
            pending = self._series.get(id(series))
            if pending is None or pending.series is not series:
                pending = self._series[id(series)] = DeferredSeries(self, series, bounds)
            return pending

    def flush(self) -> int:
        """Write every queued update to its prometheus series (one write per series); the
        number of series written."""
        with self._flush_lock:
            queued, touched = self.pending, dict[DeferredSeries, None]()
            while queued:
                series, amount = queued.popleft()  # only flush takes: never empty here
                series.add(amount)
                touched[series] = None
            for series in touched:
                series.write()
        return len(touched)

    def start_flusher(self) -> None:
        with self.lock:
            if self.flushing:
                return
            self.flushing = True
        thread = threading.Thread(
            target=_flusher, args=(weakref.ref(self),), name="metrics-flush", daemon=True
        )
        thread.start()

    def _idle(self) -> bool:
        """True (and the flusher ends) when nothing is queued. An update queued while it
        decides either sees ``flushing`` off (and starts a flusher) or is seen here."""
        with self.lock:
            if self.pending:
                return False
            self.flushing = False
        if self.pending:
            with self.lock:
                if not self.flushing:  # nobody started another: this one goes on
                    self.flushing = True
                    return False
        return True


def _flusher(ref: weakref.ref[Deferred]) -> None:
    quiet = 0  # intervals in a row with nothing written
    while True:
        owner = ref()
        if owner is None:
            return
        interval = owner.interval_s
        del owner
        threading.Event().wait(interval)
        owner = ref()
        if owner is None:
            return
        try:
            written = owner.flush()
        except Exception:  # e.g. the multiprocess folder's disk is full: the queue is drained
            log.exception("writing the per-request metrics failed; the flusher goes on")
            written = 1
        quiet = 0 if written else quiet + 1
        if quiet >= owner.idle_flushes and owner._idle():
            return
        del owner


_LIVE: weakref.WeakSet[Deferred] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for deferred in list(_LIVE):
        deferred.flush()


def multiprocess_enabled() -> bool:
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (called by the supervisor when it reaps a worker)."""
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class RankerMetrics:
    """Every metric of the ranker, registered in ``registry`` (one object per process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.deferred = Deferred()
        """The per-request updates' batches (:class:`Deferred`)."""
        r = registry
        self.request_latency = Histogram(
            "rankswap_ranker_request_duration_seconds",
            "Time to answer a request, by route (in-process, from routing to response).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "rankswap_ranker_requests",
            "Requests answered, by route and HTTP status.",
            ["route", "status"],
            registry=r,
        )
        self.rank_cpu = Counter(
            "rankswap_ranker_rank_cpu_seconds",
            "CPU time of the worker threads spent in ranking (bundle choice, rank() and its "
            "counters) for rank requests, errors included: against the worker processes' CPU "
            "time (process_cpu_seconds_total), the cost of everything around ranking "
            "(HTTP, JSON parsing, middleware, metrics, logs) per request.",
            registry=r,
        )
        self.candidates = Histogram(
            "rankswap_ranker_candidates",
            "Candidates scored per rank request.",
            buckets=CANDIDATE_BUCKETS,
            registry=r,
        )
        self.active_bundle = Gauge(
            "rankswap_ranker_active_bundle",
            "Worker processes serving each bundle (1 per worker; summed over live workers).",
            ["bundle_id", "model_name", "model_version", "feature_schema", "features_version"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.cohort_bundle = Gauge(
            "rankswap_ranker_cohort_bundle",
            "Worker processes serving each bundle to a tenant cohort (a TenantCanary step: the "
            "cohort's tenants get it, the others the active bundle; 1 per worker; summed over "
            "live workers).",
            ["bundle_id", "model_name", "model_version", "feature_schema", "features_version"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.loads = Counter(
            "rankswap_ranker_bundle_loads",
            "Bundle loads that succeeded, by stage: 'resolve' (supervisor: fetch, verify, "
            "validate) and 'activate' (each worker: open, smoke score, swap).",
            ["stage"],
            registry=r,
        )
        self.load_failures = Counter(
            "rankswap_ranker_bundle_load_failures",
            "Bundle loads that failed (the active bundle kept serving), by stage and error code.",
            ["stage", "code"],
            registry=r,
        )
        self.rollbacks = Counter(
            "rankswap_ranker_bundle_rollbacks",
            "Switches back to a warm bundle (a pointer swap, no load), per worker.",
            registry=r,
        )
        self.load_duration = Histogram(
            "rankswap_ranker_bundle_load_duration_seconds",
            "Time to load a bundle, by stage (see rankswap_ranker_bundle_loads_total).",
            ["stage"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.feature_age = Gauge(
            "rankswap_ranker_feature_age_seconds",
            "Seconds since the active features artifact was built (oldest over live workers).",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.unknown_categories = Counter(
            "rankswap_ranker_unknown_categories",
            "Values the active bundle has not seen, by field: categorical model inputs unknown "
            "to the model's encoder (rows for category/account_code, requests for "
            "vendor_industry/employee_department), and description terms not in the features.",
            ["field"],
            registry=r,
        )
        self.worker_restarts = Counter(
            "rankswap_ranker_worker_restarts",
            "Worker processes the supervisor restarted after they died (the pod stays up).",
            registry=r,
        )
        self.missing_feature_rows = Counter(
            "rankswap_ranker_missing_feature_rows",
            "Candidate rows that took the documented defaults because a feature table had no "
            "row for them, by table.",
            ["table"],
            registry=r,
        )
        self._hot: dict[tuple[str, tuple[str, ...]], DeferredSeries] = {}

    def hot(self, name: str, *labels: str) -> DeferredSeries:
        """The per-request series ``name`` (an attribute: a counter or histogram) with
        ``labels``, deferred (:class:`Deferred`) and bound once (``labels()`` costs more than
        an update). The series appears when first updated, as it would with ``labels()``."""
        key = (name, labels)
        series = self._hot.get(key)
        if series is None:
            metric = getattr(self, name)
            child = metric.labels(*labels) if labels else metric
            series = self._hot[key] = (
                self.deferred.histogram(child)
                if isinstance(metric, Histogram)
                else self.deferred.counter(child)
            )
        return series

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of the whole pod (all processes in multiprocess mode); this
        worker's deferred updates are written first."""
        self.deferred.flush()
        if multiprocess_enabled():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
