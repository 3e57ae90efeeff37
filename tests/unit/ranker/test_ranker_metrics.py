"""Deferred per-request metrics: the same series and values as direct prometheus updates,
written in batches (before an exposition, by the flusher thread, at exit)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from rankswap_dev.wait import wait_until
from rankswap_ranker.metrics import LATENCY_BUCKETS, Deferred, RankerMetrics

AMOUNTS = [0.0, 0.0004, 0.0005, 0.00051, 0.002, 0.0075, 0.3, 2.5, 2.6, 1e9, 0.001, 0.0005]


def _pair(registry: CollectorRegistry) -> tuple[Histogram, Counter]:
    hist = Histogram("lat_seconds", "h", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
    return hist, Counter("reqs", "c", ["route", "status"], registry=registry)


def _samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    """Every sample but the creation times."""
    return [
        (s.name, s.labels, s.value)
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    ]


def test_deferred_updates_equal_direct_ones_after_a_flush() -> None:
    """Pins prometheus_client's histogram layout the flush writes into (a bucket value per
    bound, non-cumulative, and the sum): the exposition equals the one of direct updates."""
    direct, deferred_reg = CollectorRegistry(), CollectorRegistry()
    d_hist, d_count = _pair(direct)
    hist, count = _pair(deferred_reg)
    deferred = Deferred(interval_s=60.0)
    lat, req = deferred.histogram(hist.labels("/v1/rank")), deferred.counter(count.labels("a", "1"))
    for amount in AMOUNTS:
        d_hist.labels("/v1/rank").observe(amount)
        d_count.labels("a", "1").inc(amount)
        lat.observe(amount)
        req.inc(amount)
    req.inc()
    d_count.labels("a", "1").inc()
    deferred.flush()
    assert _samples(deferred_reg) == _samples(direct)
    with pytest.raises(ValueError, match="non-negative"):
        req.inc(-1.0)


def test_updates_wait_for_a_flush_and_an_exposition_flushes_first() -> None:
    metrics = RankerMetrics(CollectorRegistry())
    metrics.deferred.interval_s = 60.0  # no flusher write during the test
    rank_cpu = metrics.hot("rank_cpu")
    assert metrics.hot("rank_cpu") is rank_cpu  # bound once
    for _ in range(100):
        rank_cpu.inc(0.001)
        metrics.hot("requests", "/v1/rank", "200").inc()
    assert metrics.registry.get_sample_value("rankswap_ranker_rank_cpu_seconds_total") == 0.0
    text = metrics.exposition()[0].decode()
    assert 'rankswap_ranker_requests_total{route="/v1/rank",status="200"} 100.0' in text
    cpu = metrics.registry.get_sample_value("rankswap_ranker_rank_cpu_seconds_total")
    assert cpu == pytest.approx(0.1)


def test_the_flusher_writes_without_a_scrape_and_ends_when_idle() -> None:
    metrics = RankerMetrics(CollectorRegistry())
    metrics.deferred.interval_s = 0.05
    metrics.deferred.idle_flushes = 2
    metrics.hot("candidates").observe(770)
    value = metrics.registry.get_sample_value

    wait_until(lambda: value("rankswap_ranker_candidates_count") == 1.0, 10, what="a flush")
    assert value("rankswap_ranker_candidates_bucket", {"le": "1000.0"}) == 1.0
    wait_until(lambda: not metrics.deferred.flushing, 10, what="the flusher's end")
    metrics.hot("candidates").observe(5)  # a new update starts a new flusher
    wait_until(lambda: value("rankswap_ranker_candidates_count") == 2.0, 10, what="a 2nd flush")
    assert value("rankswap_ranker_candidates_bucket", {"le": "10.0"}) == 1.0


def test_one_flusher_serves_updates_that_keep_coming() -> None:
    """Until ``idle_flushes`` intervals pass with nothing to write, the flusher stays: an
    update after a flush is written by the same thread, no new one is started."""
    metrics = RankerMetrics(CollectorRegistry())
    metrics.deferred.interval_s = 0.05
    metrics.deferred.idle_flushes = 10**9
    value = metrics.registry.get_sample_value
    started: list[threading.Thread] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        if thread.name == "metrics-flush":
            started.append(thread)
        start(thread)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(threading.Thread, "start", counted)
        metrics.hot("candidates").observe(770)
        wait_until(lambda: value("rankswap_ranker_candidates_count") == 1.0, 10, what="a flush")
        metrics.hot("candidates").observe(5)
        wait_until(lambda: value("rankswap_ranker_candidates_count") == 2.0, 10, what="a 2nd")
    assert len(started) == 1 and started[0].is_alive() and metrics.deferred.flushing
    metrics.deferred.idle_flushes = 1  # now it ends
    wait_until(lambda: not started[0].is_alive(), 10, what="the flusher's end")


def test_updates_from_many_threads_during_flushes_are_all_written() -> None:
    """An update is an append to a queue that flushes drain meanwhile: none is lost."""
    metrics = RankerMetrics(CollectorRegistry())
    metrics.deferred.interval_s = 0.001
    metrics.deferred.idle_flushes = 10**9
    counter, hist = metrics.hot("rank_cpu"), metrics.hot("candidates")

    def hammer() -> None:
        for i in range(5000):
            counter.inc(1.0)
            hist.observe(float(i % 3000))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    metrics.deferred.flush()
    value = metrics.registry.get_sample_value
    assert value("rankswap_ranker_rank_cpu_seconds_total") == 20000.0
    assert value("rankswap_ranker_candidates_count") == 20000.0
    assert value("rankswap_ranker_candidates_bucket", {"le": "10.0"}) == 4 * 22  # 0-10, 3000-3010
    metrics.deferred.idle_flushes = 1
    wait_until(lambda: not metrics.deferred.flushing, 10, what="the flusher's end")


def test_an_update_queued_while_the_flusher_decides_to_end_keeps_it() -> None:
    """The flusher found nothing queued and let ``flushing`` go; an update that came before
    its re-check and saw ``flushing`` still on is written by it."""
    deferred = Deferred(interval_s=60.0)
    registry = CollectorRegistry()
    _, count = _pair(registry)
    req = deferred.counter(count.labels("a", "1"))
    deferred.flushing = True  # as if a flusher ran
    real_lock = deferred.lock

    class Racing:
        """The lock of ``_idle``: between its first check and its re-check an update comes."""

        calls = 0

        def __enter__(self) -> None:
            real_lock.acquire()

        def __exit__(self, *exc: object) -> None:
            real_lock.release()
            Racing.calls += 1
            if Racing.calls == 1:
                deferred.pending.append((req, 1.0))  # the update, seeing flushing on before

    deferred.lock = Racing()  # type: ignore[assignment]
    assert deferred._idle() is False and deferred.flushing
    deferred.lock = real_lock
    deferred.flush()
    assert registry.get_sample_value("reqs_total", {"route": "a", "status": "1"}) == 1.0
    assert deferred._idle() is True and not deferred.flushing


def test_a_failed_write_leaves_the_flusher_running_and_the_queue_drained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A write that raises (a full disk under the multiprocess folder) is logged; the flusher
    goes on, so the queue cannot grow without bound, and the next updates are written."""

    class Failing:
        calls = 0

        def inc(self, amount: float) -> None:
            Failing.calls += 1
            if Failing.calls == 1:
                raise OSError(28, "No space left on device")

    deferred = Deferred(interval_s=0.01)
    deferred.idle_flushes = 10**9
    series = deferred.counter(Failing())
    series.inc(1.0)
    wait_until(lambda: Failing.calls == 1 and not deferred.pending, 10, what="a failed write")
    series.inc(2.0)
    wait_until(lambda: Failing.calls == 2, 10, what="the next write")
    assert deferred.flushing and "writing the per-request metrics failed" in caplog.text
    deferred.idle_flushes = 1
    wait_until(lambda: not deferred.flushing, 10, what="the flusher's end")


_CHILD = """
from prometheus_client import CollectorRegistry
from rankswap_ranker.metrics import RankerMetrics, multiprocess_enabled
assert multiprocess_enabled()
m = RankerMetrics(CollectorRegistry())
m.deferred.interval_s = 3600.0
for _ in range(7):
    m.hot("requests", "/v1/rank", "200").inc()
    m.hot("request_latency", "/v1/rank").observe(0.001)
"""


def test_a_worker_exiting_writes_what_is_pending(tmp_path: Path) -> None:
    """Multiprocess mode, a real worker process: updates not flushed yet when it exits are in
    its mmap files (the interpreter's exit flushes them), so the pod's /metrics keeps them."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", _CHILD], env=env, check=True, timeout=60)
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    labels = {"route": "/v1/rank", "status": "200"}
    assert registry.get_sample_value("rankswap_ranker_requests_total", labels) == 7.0
    count = registry.get_sample_value(
        "rankswap_ranker_request_duration_seconds_count", {"route": "/v1/rank"}
    )
    assert count == 7.0
