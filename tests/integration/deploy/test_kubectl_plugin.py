"""`kubectl rankswap ...`: the real kubectl finds the plugin executable on PATH and runs the
helpers against the test API server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from tests.integration.deploy.layout import SAMPLE

from rankswap_dev.localkube import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def plugin_on_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The virtual environment's bin folder (where pip installed kubectl-rankswap) on PATH."""
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "kubectl-rankswap").exists(), (
        f"kubectl-rankswap missing in {bin_dir}: make venv"
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    return bin_dir


def _sample(namespace: str) -> str:
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["metadata"]["namespace"] = namespace
    return yaml.safe_dump(doc)


def test_kubectl_rankswap_status_and_promote(
    control_plane: Cluster, namespace: str, crd_installed: None, plugin_on_path: Path
) -> None:
    listed = control_plane.kubectl("plugin", "list", check=False)
    assert str(plugin_on_path / "kubectl-rankswap") in listed.stdout, listed.stdout + listed.stderr
    control_plane.kubectl("apply", "-f", "-", input=_sample(namespace))

    status = control_plane.kubectl("rankswap", "status", "lineitems", "-n", namespace)
    lines = status.stdout.splitlines()
    assert lines[0].startswith(f"{namespace}/lineitems  generation 1"), status.stdout
    assert "s3://ml-artifacts/rankswap/models/line-items/2026-05-02" in lines[1], status.stdout

    new = "s3://ml-artifacts/rankswap/models/line-items/2026-05-09"
    done = control_plane.kubectl(
        "rankswap", "promote", "lineitems", "-n", namespace, "--model-uri", new
    )
    assert "promoted" in done.stdout, done.stdout
    obj = json.loads(
        control_plane.kubectl("get", "av", "lineitems", "-n", namespace, "-o", "json").stdout
    )
    assert obj["spec"]["model"]["uri"] == new and obj["metadata"]["generation"] == 2


def test_kubectl_rankswap_refuses_what_is_not_a_helper(
    control_plane: Cluster, namespace: str, crd_installed: None, plugin_on_path: Path
) -> None:
    refused = control_plane.kubectl("rankswap", "serve", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "usage: kubectl rankswap {promote,rollback,status}" not in refused.stdout
    assert "kubectl rankswap {promote,rollback,status}" in refused.stderr, refused.stderr
    missing = control_plane.kubectl("rankswap", "status", "nothere", "-n", namespace, check=False)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert f"ArtifactVersion {namespace}/nothere: 404" in missing.stderr, missing.stderr
