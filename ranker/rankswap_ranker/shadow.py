"""Shadow comparison: a sample of live requests scored again with the warm bundle, off the
response path.

The rank route calls :meth:`Shadow.offer` once the response body is built. ``offer`` counts the
request for its (active, reference) pair, and for a sampled request (``RANKSWAP_SHADOW_SAMPLE_RATE``)
puts a reference to what the ranking already computed (context, candidates, scores, top-k) on a
bounded queue (``RANKSWAP_SHADOW_QUEUE_SIZE``) and returns; when the queue is full the sample is
dropped and counted, so a busy worker never waits. One daemon thread per worker takes samples
off the queue, scores them with the reference bundle (the most recent warm one, chosen when the
sample was taken), compares (:mod:`rankswap.comparison`) and accumulates per pair. A pair starts
afresh when its active bundle becomes active, so each accumulator covers one activation.

During a tenant canary (the registry holds a cohort) only the cohort's requests are compared:
answered by the cohort bundle, scored again with the pod's own bundle, accumulated per
(cohort bundle, own bundle, cohort fingerprint), so each step of the canary is measured on its
own; requests of the other tenants are not compared.

Each worker writes its accumulators to ``<run_dir>/shadow/<slot>.json`` (about once a second
while they change); the coordinator sums the live workers' files into the pod state
(``shadow`` in ``GET /admin/v1/state``, :func:`read_pod_comparisons`), the way it reads the
worker state files. Prometheus metrics labelled by bundle: :class:`ShadowMetrics`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import BaseModel, ValidationError

from rankswap import featurespec as fs
from rankswap.comparison import Comparison, compare_request, merge
from rankswap_ranker.bundle import Bundle, utc_now_iso
from rankswap_ranker.convergence import RunDir, pid_alive, read_json, write_json_atomic
from rankswap_ranker.ranking import RankOutcome
from rankswap_ranker.registry import BundleRegistry

log = logging.getLogger("rankswap.ranker.shadow")

PAIRS_KEPT = 4
"""Accumulators kept per worker (the current pair and the few before it)."""


class ShadowMetrics:
    """The comparison's Prometheus metrics (summed over workers in multiprocess mode)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        pair = ["active", "reference"]
        self.requests = Counter(
            "rankswap_ranker_shadow_requests",
            "Live requests by (active, reference) bundle pair and what the shadow did with "
            "them: 'compared', 'dropped' (queue full), 'reference_error'.",
            [*pair, "result"],
            registry=registry,
        )
        self.top1_agreements = Counter(
            "rankswap_ranker_shadow_top1_agreements",
            "Compared requests where both bundles ranked the same item first.",
            pair,
            registry=registry,
        )
        self.topk_overlap = Counter(
            "rankswap_ranker_shadow_topk_overlap",
            "Sum over compared requests of |top-k(active) ∩ top-k(reference)| / k.",
            pair,
            registry=registry,
        )
        self.psi = Gauge(
            "rankswap_ranker_shadow_psi",
            "PSI of the active bundle's scores against the reference's (max over workers).",
            pair,
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.score_duration = Histogram(
            "rankswap_ranker_shadow_score_duration_seconds",
            "Time to score a compared request (feature gather, inputs, model), by bundle and "
            "its role ('active' on the live request, 'reference' in the shadow).",
            ["bundle_id", "role"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )


@dataclass(frozen=True)
class _Sample:
    key: tuple[str, str, str | None]
    reference: Bundle
    context: fs.RankContext
    cands: fs.Candidates
    scores: npt.NDArray[np.float32]
    top: Any
    top_k: int
    active_seconds: float


class ShadowFile(BaseModel):
    """``<run_dir>/shadow/<slot>.json``: one worker's accumulators."""

    pid: int
    updated_at: str
    comparisons: list[Comparison]


class Shadow:
    """One worker's shadow comparison (see the module docstring)."""

    def __init__(
        self,
        registry: BundleRegistry[Bundle],
        metrics: ShadowMetrics,
        *,
        sample_rate: float,
        queue_size: int,
        state_path: Path | None = None,
        pid: int = 0,
        write_interval_s: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.sample_rate = sample_rate
        self._queue: queue.Queue[_Sample | None] = queue.Queue(maxsize=max(queue_size, 1))
        self._state_path = state_path
        self._pid = pid
        self._write_interval_s = write_interval_s
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._pairs: OrderedDict[tuple[str, str, str | None], Comparison] = OrderedDict()
        self._active_id: str | None = None
        self._dirty = False
        self._thread: threading.Thread | None = None

    # The request thread: O(1), never blocks ----------------------------------------------

    def offer(self, outcome: RankOutcome) -> None:
        """Count a live request answered by ``outcome.bundle``; queue it for comparison when
        sampled (dropped, and counted, when the queue is full)."""
        if self.sample_rate <= 0 or outcome.context is None or outcome.cands is None:
            return
        pick = self._reference(outcome.bundle)
        if pick is None:
            return
        reference, key = pick
        sampled = self._rng.random() < self.sample_rate
        with self._lock:
            acc = self._pair(key)
            acc.offered += 1
            acc.sampled += int(sampled)
            self._dirty = True
        if not sampled or outcome.scores is None or outcome.query is None:
            return
        t = outcome.timings
        sample = _Sample(
            key,
            reference,
            outcome.context,
            outcome.cands,
            outcome.scores,
            outcome.top,
            outcome.query.top_k,
            t.get("features", 0.0) + t.get("inputs", 0.0) + t.get("model", 0.0),
        )
        try:
            self._queue.put_nowait(sample)
        except queue.Full:
            with self._lock:
                self._pair(key).dropped += 1
            self.metrics.requests.labels(*key[:2], "dropped").inc()

    def _reference(self, served: Bundle) -> tuple[Bundle, tuple[str, str, str | None]] | None:
        """What a request answered by ``served`` is compared with, and its accumulator's key:
        during a tenant canary the cohort's requests against the pod's own bundle (others not
        at all), else against the most recent warm bundle."""
        cohort = self.registry.cohort
        if cohort is not None:
            own = self.registry.active
            if served is not cohort.bundle or own is None:
                return None
            return own, (served.bundle_id, own.bundle_id, cohort.assignment.fingerprint)
        warm = self.registry.warm_bundles()
        if not warm:
            return None
        return warm[0], (served.bundle_id, warm[0].bundle_id, None)

    def failed(self, bundle: Bundle) -> None:
        """Count a live request that ``bundle`` failed (an internal error)."""
        pick = self._reference(bundle) if self.sample_rate > 0 else None
        if pick is None:
            return
        with self._lock:
            self._pair(pick[1]).active_errors += 1
            self._dirty = True

    def _pair(self, key: tuple[str, str, str | None]) -> Comparison:
        """The accumulator of ``key`` (lock held); a new active bundle (or cohort) starts a
        fresh one."""
        if key[0] != self._active_id:
            self._active_id = key[0]
            self._pairs.pop(key, None)
        acc = self._pairs.get(key)
        if acc is None:
            acc = Comparison(active=key[0], reference=key[1], since=utc_now_iso(), cohort=key[2])
            self._pairs[key] = acc
            while len(self._pairs) > PAIRS_KEPT:
                self._pairs.popitem(last=False)
        return acc

    # The shadow thread ----------------------------------------------------------------------

    def start(self) -> None:
        if self.sample_rate <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    def _run(self) -> None:
        last_write = 0.0
        while True:
            try:
                sample = self._queue.get(timeout=self._write_interval_s)
            except queue.Empty:
                sample = _IDLE
            if sample is None:
                self.write()
                return
            if sample is not _IDLE:
                try:
                    self.compare(sample)
                except Exception:  # the comparison must never take the worker down
                    log.exception("shadow comparison failed")
            now = time.monotonic()
            if now - last_write >= self._write_interval_s:
                self.write()
                last_write = now

    def drain(self) -> int:
        """Compare every queued sample now, in this thread (tests, benchmarks)."""
        n = 0
        while True:
            try:
                sample = self._queue.get_nowait()
            except queue.Empty:
                return n
            if sample is not None and sample is not _IDLE:
                self.compare(sample)
                n += 1

    def compare(self, sample: _Sample) -> None:
        """Score ``sample`` with its reference bundle and accumulate the comparison."""
        ref = sample.reference
        t0 = time.perf_counter()
        try:
            scores = ref.score(ref.assemble(sample.context, sample.cands))
        except Exception:
            log.warning("the reference bundle failed a sampled request", exc_info=True)
            with self._lock:
                self._pair_if_current(sample.key).reference_errors += 1
                self._dirty = True
            self.metrics.requests.labels(*sample.key[:2], "reference_error").inc()
            return
        seconds = time.perf_counter() - t0
        ref_top = ref.top_k(scores, sample.cands.item_ids, sample.top_k)
        one = compare_request(
            [int(i) for i in sample.top],
            scores,
            [int(i) for i in ref_top],
            sample.scores,
            active_seconds=sample.active_seconds,
            reference_seconds=seconds,
        )
        with self._lock:
            acc = self._pair_if_current(sample.key)
            acc.add(one)
            self._dirty = True
            psi = acc.psi
        m = self.metrics
        pair = sample.key[:2]
        m.requests.labels(*pair, "compared").inc()
        if one.top1_agrees:
            m.top1_agreements.labels(*pair).inc()
        m.topk_overlap.labels(*pair).inc(one.topk_overlap)
        if psi is not None:
            m.psi.labels(*pair).set(psi)
        m.score_duration.labels(sample.key[0], "active").observe(sample.active_seconds)
        m.score_duration.labels(sample.key[1], "reference").observe(seconds)

    def _pair_if_current(self, key: tuple[str, str, str | None]) -> Comparison:
        """The accumulator of ``key`` without starting a new activation (lock held): a sample
        taken before a swap still counts for the pair it was taken in, if that is kept."""
        acc = self._pairs.get(key)
        if acc is None:
            acc = Comparison(active=key[0], reference=key[1], since=utc_now_iso(), cohort=key[2])
            self._pairs[key] = acc
        return acc

    # State ----------------------------------------------------------------------------------

    def comparisons(self) -> list[Comparison]:
        with self._lock:
            return [c.model_copy(deep=True) for c in self._pairs.values()]

    def write(self) -> None:
        """Write this worker's accumulators to its shadow file (when they changed)."""
        if self._state_path is None:
            return
        with self._lock:
            if not self._dirty:
                return
            self._dirty = False
            doc = ShadowFile(
                pid=self._pid,
                updated_at=utc_now_iso(),
                comparisons=[c.model_copy(deep=True) for c in self._pairs.values()],
            )
        write_json_atomic(self._state_path, doc.model_dump(mode="json"))


_IDLE: Any = object()


def shadow_path(run_dir: RunDir, slot: int) -> Path:
    return run_dir.root / "shadow" / f"{slot}.json"


def read_pod_comparisons(run_dir: RunDir, workers: int) -> list[Comparison]:
    """The live workers' accumulators, summed per (active, reference) pair."""
    found: list[Comparison] = []
    for slot in range(workers):
        doc = read_json(shadow_path(run_dir, slot))
        if doc is None:
            continue
        try:
            parsed = ShadowFile.model_validate(doc)
        except ValidationError:
            log.warning("invalid shadow file", extra={"ctx": {"slot": slot}})
            continue
        if parsed.pid and pid_alive(parsed.pid):
            found.extend(parsed.comparisons)
    return merge(found)
