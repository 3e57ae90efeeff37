"""A restricted identity is refused what its Role does not allow (RBAC is really enforced)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from rankswap_dev.localkube import Cluster, ControlPlane

pytestmark = pytest.mark.integration


def _grant_pod_reader(cluster: Cluster, namespace: str, subject: dict[str, str]) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "pod-reader", "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "pod-reader", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [subject],
    }
    items = {"apiVersion": "v1", "kind": "List", "items": [role, binding]}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(items))


def _assert_restricted(cluster: Cluster, namespace: str, kubeconfig: Path) -> None:
    def kc(*args: str) -> Any:
        return cluster.kubectl(*args, kubeconfig=kubeconfig, check=False)

    allowed = kc("get", "pods", "-n", namespace)
    assert allowed.returncode == 0, allowed.stderr
    for args in (
        ("create", "configmap", "x", "-n", namespace),
        ("get", "secrets", "-n", namespace),
        ("get", "pods", "-n", "default"),
        ("delete", "pod", "anything", "-n", namespace),
        ("get", "namespaces"),
    ):
        refused = kc(*args)
        assert refused.returncode != 0, f"{args} was allowed"
        assert "Forbidden" in refused.stderr or "forbidden" in refused.stderr, refused.stderr
    assert kc("auth", "can-i", "list", "pods", "-n", namespace).stdout.strip() == "yes"
    assert kc("auth", "can-i", "create", "pods", "-n", namespace).stdout.strip() == "no"
    # the Python client sees a 403 as well
    api = cluster.api_client(kubeconfig)
    try:
        v1: Any = client.CoreV1Api(api)
        v1.list_namespaced_pod(namespace)
        with pytest.raises(ApiException) as err:
            v1.create_namespaced_config_map(namespace, {"metadata": {"name": "y"}})
        assert err.value.status == 403
    finally:
        api.close()


@pytest.mark.timeout(90)
def test_certificate_user_is_restricted_by_role(
    local_control_plane: ControlPlane, namespace: str
) -> None:
    kubeconfig = local_control_plane.user_kubeconfig("alice", groups=["rankswap:readers"])
    before = local_control_plane.kubectl(
        "get", "pods", "-n", namespace, kubeconfig=kubeconfig, check=False
    )
    assert before.returncode != 0 and "forbidden" in before.stderr.lower()
    _grant_pod_reader(local_control_plane, namespace, {"kind": "User", "name": "alice"})
    _assert_restricted(local_control_plane, namespace, kubeconfig)


@pytest.mark.timeout(90)
def test_group_binding_applies_to_certificate_groups(
    local_control_plane: ControlPlane, namespace: str
) -> None:
    kubeconfig = local_control_plane.user_kubeconfig("bob", groups=["rankswap:readers"])
    _grant_pod_reader(local_control_plane, namespace, {"kind": "Group", "name": "rankswap:readers"})
    _assert_restricted(local_control_plane, namespace, kubeconfig)


@pytest.mark.timeout(90)
def test_service_account_token_is_restricted_by_role(
    control_plane: Cluster, namespace: str
) -> None:
    kubeconfig = control_plane.service_account_kubeconfig(namespace, "operator")
    _grant_pod_reader(
        control_plane,
        namespace,
        {"kind": "ServiceAccount", "name": "operator", "namespace": namespace},
    )
    _assert_restricted(control_plane, namespace, kubeconfig)
