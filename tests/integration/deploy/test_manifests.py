"""manifests/: the kustomize build and the sample ArtifactVersion, validated by the API server."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from tests.integration.deploy.layout import MANIFESTS, SAMPLE, admin_port_peers, matches

from rankswap_dev.localkube import ControlPlane
from rankswap_operator.startup import configmap_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def fixed_namespaces(local_control_plane: ControlPlane) -> None:
    """The namespaces manifests/ names (rankswap, rankswap-system) must exist for a dry run of
    the objects in them; created for real, on the local control plane only."""
    for name in ("rankswap", "rankswap-system"):
        local_control_plane.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )


def test_kustomize_build_is_valid_for_the_api_server(
    local_control_plane: ControlPlane, crd_installed: None, fixed_namespaces: None
) -> None:
    rendered = local_control_plane.kubectl("kustomize", str(MANIFESTS)).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    assert set(by_kind) == {
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    done = local_control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == len(docs) and all("(server dry run)" in x for x in lines), done.stdout

    deployments = {d["metadata"]["name"]: d for d in by_kind["Deployment"]}
    operator = deployments["rankswap-operator"]["spec"]
    assert operator["replicas"] == 1 and operator["strategy"] == {"type": "Recreate"}
    ranker = deployments["rankswap-ranker"]["spec"]["template"]["spec"]
    # The configMapGenerator's hashed name is what the pods reference.
    (env_cm,) = [
        c for c in by_kind["ConfigMap"] if c["metadata"]["name"].startswith("rankswap-ranker-env-")
    ]
    refs = [
        e["configMapRef"]["name"] for e in ranker["containers"][0]["envFrom"] if "configMapRef" in e
    ]
    assert refs == [env_cm["metadata"]["name"]]
    # The start-up ConfigMap the pods mount is the one the operator keeps for the sample
    # ArtifactVersion, and the operator may keep it.
    sample = yaml.safe_load(SAMPLE.read_text())
    (startup,) = [v for v in ranker["volumes"] if v["name"] == "startup"]
    assert startup["configMap"]["name"] == configmap_name(sample["metadata"]["name"])
    assert startup["configMap"]["optional"] is True
    (role,) = by_kind["ClusterRole"]
    assert {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "verbs": ["get", "create", "patch"],
    } in (role["rules"])
    # The admin port admits the operator's pods in rankswap-system, and nothing else.
    (policy,) = by_kind["NetworkPolicy"]
    (peer,) = admin_port_peers(policy)
    assert peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "rankswap-system"}
    }
    op_labels = deployments["rankswap-operator"]["spec"]["template"]["metadata"]["labels"]
    assert matches(peer["podSelector"]["matchLabels"], op_labels)


def test_sample_artifactversion_is_accepted(
    local_control_plane: ControlPlane, crd_installed: None, fixed_namespaces: None
) -> None:
    done = local_control_plane.kubectl("apply", "--dry-run=server", "-o", "json", "-f", str(SAMPLE))
    spec = json.loads(done.stdout)["spec"]
    assert spec["rollout"]["strategy"] == "Canary"
    assert spec["features"]["refreshIntervalSeconds"] == 300  # defaulted by the schema
