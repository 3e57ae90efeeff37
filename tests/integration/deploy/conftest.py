"""Fixtures of the deploy tests."""

from __future__ import annotations

import pytest
import yaml

from rankswap_dev.localkube import Cluster

# The Prometheus Operator's kinds the chart renders, as namespaced stand-ins that require the
# fields the chart always sets; their full schemas are the Prometheus Operator's (not vendored
# here). The rules themselves are checked by promtool (test_monitoring.py).
_STANDINS = {
    "PodMonitor": ("podmonitors", ["selector", "podMetricsEndpoints"]),
    "PrometheusRule": ("prometheusrules", ["groups"]),
}


def _standin(kind: str, plural: str, required: list[str]) -> dict[str, object]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": kind.lower(),
                "listKind": f"{kind}List",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": required,
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="session")
def monitoring_crds(control_plane: Cluster) -> None:
    """PodMonitor and PrometheusRule known to the API server: the real CRDs when the cluster
    has them (never replaced), else the stand-ins above."""
    for kind, (plural, required) in _STANDINS.items():
        name = f"{plural}.monitoring.coreos.com"
        if control_plane.kubectl("get", "crd", name, check=False).returncode == 0:
            continue
        control_plane.kubectl(
            "create", "-f", "-", input=yaml.safe_dump(_standin(kind, plural, required))
        )
        control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
