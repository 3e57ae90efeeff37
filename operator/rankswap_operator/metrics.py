"""Prometheus metrics of the operator, served on their own port (kopf exports none).

The gauges mirror each ArtifactVersion's status as the operator last wrote it, so an alert
needs no kube-state-metrics custom-resource configuration; the counter counts the Events the
operator posts (rollouts started, succeeded, failed, rollbacks, pushes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

CONDITION_TYPES = ("Ready", "Progressing", "Degraded")


class OperatorMetrics:
    """Every metric of the operator, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.condition = Gauge(
            "rankswap_operator_condition",
            "1 when the ArtifactVersion's condition of this type is True, else 0.",
            ["namespace", "artifactversion", "type"],
            registry=registry,
        )
        self.rollout_failed = Gauge(
            "rankswap_operator_rollout_failed",
            "1 while the ArtifactVersion's latest rollout is in phase Failed, else 0.",
            ["namespace", "artifactversion"],
            registry=registry,
        )
        self.pods = Gauge(
            "rankswap_operator_pods",
            "Selected pods of the ArtifactVersion, by the state the operator reports for each.",
            ["namespace", "artifactversion", "state"],
            registry=registry,
        )
        self.events = Counter(
            "rankswap_operator_events",
            "Events the operator posted on ArtifactVersions, by type and reason.",
            ["namespace", "artifactversion", "type", "reason"],
            registry=registry,
        )
        self._pod_states: dict[tuple[str, str], set[str]] = {}

    def record_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Mirror one status document (as written to the resource) into the gauges."""
        seen = {
            c.get("type"): c.get("status") == "True"
            for c in status.get("conditions") or []
            if isinstance(c, Mapping)
        }
        for kind in CONDITION_TYPES:
            self.condition.labels(namespace, name, kind).set(1 if seen.get(kind) else 0)
        rollout = status.get("rollout")
        failed = isinstance(rollout, Mapping) and rollout.get("phase") == "Failed"
        self.rollout_failed.labels(namespace, name).set(1 if failed else 0)
        counts: dict[str, int] = {}
        for pod in status.get("pods") or []:
            if isinstance(pod, Mapping):
                state = str(pod.get("state") or "Unknown")
                counts[state] = counts.get(state, 0) + 1
        self._forget_pods(namespace, name)
        for state, n in counts.items():
            self.pods.labels(namespace, name, state).set(n)
        self._pod_states[(namespace, name)] = set(counts)

    def record_event(self, namespace: str, name: str, type_: str, reason: str) -> None:
        self.events.labels(namespace, name, type_, reason).inc()

    def forget(self, namespace: str, name: str) -> None:
        """Drop the gauges of a resource the operator no longer reconciles (deleted)."""
        for kind in CONDITION_TYPES:
            _remove(self.condition, namespace, name, kind)
        _remove(self.rollout_failed, namespace, name)
        self._forget_pods(namespace, name)

    def _forget_pods(self, namespace: str, name: str) -> None:
        for state in self._pod_states.pop((namespace, name), set()):
            _remove(self.pods, namespace, name, state)


def _remove(gauge: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)


def serve(metrics: OperatorMetrics, host: str, port: int) -> None:
    """Serve ``/metrics`` of ``metrics.registry`` on ``host:port`` (a daemon thread)."""
    start_http_server(port, addr=host, registry=metrics.registry)
