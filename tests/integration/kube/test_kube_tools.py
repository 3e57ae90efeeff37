"""kubectl and helm work against the control plane; it is the version we built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankswap_dev.localkube import Cluster, ControlPlane

pytestmark = pytest.mark.integration

CHART = Path(__file__).parent / "data" / "chart"


@pytest.mark.timeout(60)
def test_kubectl_get_and_versions(control_plane: Cluster) -> None:
    names = control_plane.kubectl("get", "namespaces", "-o", "name").stdout.split()
    assert "namespace/default" in names and "namespace/kube-system" in names
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    server, kubectl = version["serverVersion"], version["clientVersion"]
    if isinstance(control_plane, ControlPlane):
        assert server["gitVersion"].startswith("v1.")
        assert server["gitVersion"] != "v0.0.0-master+$Format:%H$", "version not stamped"
    # kubectl's minor version matches the server's (the supported skew is +-1)
    assert abs(int(server["minor"].rstrip("+")) - int(kubectl["minor"].rstrip("+"))) <= 1


@pytest.mark.timeout(60)
def test_helm_template_applies_with_server_dry_run(control_plane: Cluster, namespace: str) -> None:
    rendered = control_plane.helm(
        "template", "smoke", str(CHART), "--namespace", namespace, "--set", "replicas=3"
    ).stdout
    assert "kind: Deployment" in rendered
    out = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered
    ).stdout
    assert "deployment.apps/smoke created (server dry run)" in out
    assert "configmap/smoke-config created (server dry run)" in out
    assert "service/smoke created (server dry run)" in out
    # a dry run stores nothing
    left = control_plane.kubectl("get", "deploy,cm,svc", "-n", namespace, "-o", "name").stdout
    assert "smoke" not in left


@pytest.mark.timeout(60)
def test_server_dry_run_rejects_invalid_manifest(control_plane: Cluster, namespace: str) -> None:
    rendered = control_plane.helm(
        "template", "smoke", str(CHART), "--namespace", namespace, "--set", "port=99999"
    ).stdout
    proc = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered, check=False
    )
    assert proc.returncode != 0
    assert "99999" in proc.stderr
