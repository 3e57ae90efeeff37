"""Prometheus metrics of the ranker.

With several worker processes the public ``/metrics`` (served by whichever worker accepts the
connection) must show the whole pod: the ranker then runs prometheus_client in multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR`` in the pod-local run folder, set by the supervisor before
prometheus_client is first imported; see :func:`rankswap_ranker.server.serve`). In a single process (tests) metrics live
in the :class:`~prometheus_client.CollectorRegistry` given to :class:`RankerMetrics`.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
CANDIDATE_BUCKETS = (0, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)


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

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of the whole pod (all processes in multiprocess mode)."""
        if multiprocess_enabled():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
