"""The optional HorizontalPodAutoscaler of the rankers: off in dev, on in prod, schema-checked,
and accepted by the real API server (server-side dry run)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from tests.integration.deploy.layout import CHART

from rankswap_dev.localkube import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def docs(cluster: Cluster, namespace: str, *args: str) -> list[dict[str, Any]]:
    out = cluster.helm("template", "rankswap", str(CHART), "--namespace", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def ranker(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (dep,) = [
        d
        for d in objects
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "rankswap-ranker"
    ]
    return dep


@pytest.mark.parametrize("env", ["dev", "staging"])
def test_off_outside_prod_and_the_deployment_keeps_its_replicas(
    control_plane: Cluster, namespace: str, env: str
) -> None:
    objects = docs(control_plane, namespace, "-f", str(CHART / f"values-{env}.yaml"))
    assert not [d for d in objects if d["kind"] == "HorizontalPodAutoscaler"]
    values = yaml.safe_load((CHART / f"values-{env}.yaml").read_text())
    assert ranker(objects)["spec"]["replicas"] == values["ranker"]["replicas"]


def test_prod_scales_the_ranker_deployment_and_the_api_server_accepts_it(
    control_plane: Cluster, namespace: str
) -> None:
    objects = docs(control_plane, namespace, "-f", str(CHART / "values-prod.yaml"))
    (hpa,) = [d for d in objects if d["kind"] == "HorizontalPodAutoscaler"]
    dep = ranker(objects)
    # The HPA owns the count: a helm upgrade must not reset it.
    assert "replicas" not in dep["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": dep["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] == 6 and hpa["spec"]["maxReplicas"] == 24
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 65}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    # The PDB still leaves pods serving at the HPA's floor.
    (pdb,) = [d for d in objects if d["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    assert (
        pdb["spec"]["selector"]["matchLabels"].items()
        <= dep["spec"]["template"]["metadata"]["labels"].items()
    )
    done = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input=yaml.safe_dump_all([hpa, dep]),
    )  # fmt: skip
    assert done.stdout.count("(server dry run)") == 2, done.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--set-json", "ranker.autoscaling.maxReplicas=1", "--set-json", "ranker.autoscaling.enabled=true"],
         "ranker.autoscaling.maxReplicas must be >= minReplicas"),
        (["--set-json", "ranker.autoscaling.minReplicas=0"], "/ranker/autoscaling/minReplicas"),
        (["--set-json", "ranker.autoscaling.targetCPUUtilizationPercentage=0"],
         "/ranker/autoscaling/targetCPUUtilizationPercentage"),
        (["--set-json", "ranker.autoscaling.cpu=70"], "cpu"),
        (["--set", "monitoring.podMonitor.interval=often"], "/monitoring/podMonitor/interval"),
        (["--set-json", "monitoring.prometheusRule.errorRatio=2"], "/monitoring/prometheusRule/errorRatio"),
        (["--set-json", "monitoring.dashboard.extra=true"], "extra"),
    ],
)  # fmt: skip
def test_bad_autoscaling_and_monitoring_values_are_refused(
    control_plane: Cluster, namespace: str, args: list[str], says: str
) -> None:
    done = control_plane.helm(
        "template", "rankswap", str(CHART), "--namespace", namespace,
        "-f", str(CHART / "values-staging.yaml"), *args, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert says in done.stderr, done.stderr
