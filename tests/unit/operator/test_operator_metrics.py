"""The operator's gauges mirror the status it writes; a deleted resource leaves no series."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from rankswap_operator.metrics import OperatorMetrics

pytestmark = pytest.mark.timeout(10)

STATUS = {
    "conditions": [
        {"type": "Ready", "status": "False"},
        {"type": "Progressing", "status": "False"},
        {"type": "Degraded", "status": "True", "reason": "RolloutFailed"},
    ],
    "rollout": {"phase": "Failed"},
    "pods": [
        {"name": "a", "state": "Updated"},
        {"name": "b", "state": "Updated"},
        {"name": "c", "state": "Failed"},
    ],
}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"namespace": "ns", "artifactversion": "av", **labels})


def test_status_is_mirrored_and_replaced_on_each_write() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    metrics.record_status("ns", "av", STATUS)
    assert value(registry, "rankswap_operator_condition", type="Degraded") == 1
    assert value(registry, "rankswap_operator_condition", type="Ready") == 0
    assert value(registry, "rankswap_operator_rollout_failed") == 1
    assert value(registry, "rankswap_operator_pods", state="Updated") == 2
    assert value(registry, "rankswap_operator_pods", state="Failed") == 1

    healed = {
        "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "Degraded", "status": "False"},
        ],
        "rollout": {"phase": "Complete"},
        "pods": [{"name": "a", "state": "Updated"}],
    }
    metrics.record_status("ns", "av", healed)
    assert value(registry, "rankswap_operator_condition", type="Ready") == 1
    assert value(registry, "rankswap_operator_condition", type="Degraded") == 0
    assert value(registry, "rankswap_operator_condition", type="Progressing") == 0  # absent = 0
    assert value(registry, "rankswap_operator_rollout_failed") == 0
    assert value(registry, "rankswap_operator_pods", state="Updated") == 1
    assert value(registry, "rankswap_operator_pods", state="Failed") is None  # no stale state


def test_hostile_status_shapes_do_not_break_the_mirror() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    metrics.record_status(
        "ns", "av", {"conditions": ["junk", None], "rollout": "x", "pods": [7, {}]}
    )
    assert value(registry, "rankswap_operator_condition", type="Degraded") == 0
    assert value(registry, "rankswap_operator_rollout_failed") == 0
    assert value(registry, "rankswap_operator_pods", state="Unknown") == 1


def test_events_are_counted_and_forget_drops_the_gauges() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    metrics.record_event("ns", "av", "Warning", "RolloutFailed")
    metrics.record_event("ns", "av", "Warning", "RolloutFailed")
    assert (
        value(registry, "rankswap_operator_events_total", type="Warning", reason="RolloutFailed")
        == 2
    )
    metrics.record_status("ns", "av", STATUS)
    metrics.forget("ns", "av")
    metrics.forget("ns", "av")  # twice is harmless
    assert value(registry, "rankswap_operator_condition", type="Degraded") is None
    assert value(registry, "rankswap_operator_rollout_failed") is None
    assert value(registry, "rankswap_operator_pods", state="Updated") is None
