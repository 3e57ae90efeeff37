"""The chart's optional CronJobs for the pipelines (features daily, model weekly): rendered with
the training image, the same store and DB settings, Forbid concurrency and history limits, and
valid for the real API server. Runs in `make test` (the real run of a Job is in the node tier)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from tests.integration.deploy.layout import CHART

from rankswap_dev.localkube import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def cronjobs(cluster: Cluster, namespace: str, *args: str) -> list[dict[str, Any]]:
    rendered = cluster.helm(
        "template", "rs", str(CHART), "--namespace", namespace,
        "-f", str(CHART / "values-dev.yaml"), *args,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "CronJob"]


def test_pipelines_are_off_by_default(control_plane: Cluster, namespace: str) -> None:
    assert cronjobs(control_plane, namespace) == []


def test_pipelines_cronjobs_render_and_pass_a_server_side_dry_run(
    control_plane: Cluster, namespace: str
) -> None:
    jobs = cronjobs(
        control_plane, namespace,
        "--set", "pipelines.enabled=true",
        "--set", "pipelines.image.repository=registry.example/rankswap/training",
        "--set-string", "pipelines.model.extraArgs={--train-days,182}",
    )  # fmt: skip
    by_name = {j["metadata"]["name"]: j for j in jobs}
    assert set(by_name) == {"rs-rankswap-features", "rs-rankswap-model"}
    assert by_name["rs-rankswap-features"]["spec"]["schedule"] == "30 2 * * *"
    assert by_name["rs-rankswap-model"]["spec"]["schedule"] == "0 4 * * 1"
    for job in jobs:
        spec = job["spec"]
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == "registry.example/rankswap/training:0.1.0"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        env = {e["name"]: e for e in container["env"]}
        assert env["RANKSWAP_STORE_ROOT"]["value"] == "s3://ml-artifacts-dev/rankswap"
        assert env["RANKSWAP_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "rankswap-db-dev",
            "key": "url",
        }
        # `$$` reaches the shell as `$`: Kubernetes does not expand the command substitution.
        assert '--as-of "$$(date -u +%F)"' in container["args"][0]
        assert {"configMapRef": {"name": "rs-rankswap-store"}} in container["envFrom"]
    assert by_name["rs-rankswap-model"]["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ][0]["args"][2:] == ["--train-days", "182"]
    control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input="\n---\n".join(json.dumps(j) for j in jobs),
    )  # fmt: skip


def test_pipelines_values_are_validated(control_plane: Cluster, namespace: str) -> None:
    bad = control_plane.helm(
        "template", "rs", str(CHART), "-n", namespace, "-f", str(CHART / "values-dev.yaml"),
        "--set", "pipelines.enabled=true", "--set", "pipelines.concurrency=Allow",
        check=False,
    )  # fmt: skip
    assert bad.returncode != 0 and "concurrency" in bad.stderr, bad.stderr
