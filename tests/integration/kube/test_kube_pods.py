"""Pods that are local processes: create the Pod object, patch its status like a kubelet would."""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any

import pytest
from kubernetes import client, watch

from rankswap_dev.localkube import ControlPlane

pytestmark = pytest.mark.integration


def _pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": "fake-node",
            "automountServiceAccountToken": False,
            "containers": [{"name": "ranker", "image": "ranker:dev"}],
        },
    }


def _running_status(ip: str) -> dict[str, Any]:
    conditions = [
        {"type": t, "status": "True"}
        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    return {
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": conditions,
        }
    }


def _watch() -> Any:
    return watch.Watch()  # type: ignore[no-untyped-call]  # kubernetes.watch is unannotated


def _loopback_ip() -> str:
    return f"127.0.0.{2 + secrets.randbelow(250)}"


@pytest.mark.timeout(90)
def test_fake_pod_status_is_listed_by_label_selector(
    local_control_plane: ControlPlane, kube_api: Any, namespace: str
) -> None:
    v1: Any = client.CoreV1Api(kube_api)
    ip = _loopback_ip()
    v1.create_namespaced_pod(namespace, _pod("ranker-0", {"app": "ranker", "track": "stable"}))
    v1.create_namespaced_pod(namespace, _pod("other-0", {"app": "other"}))
    v1.patch_namespaced_pod_status("ranker-0", namespace, _running_status(ip))

    pods = v1.list_namespaced_pod(namespace, label_selector="app=ranker,track=stable").items
    assert [p.metadata.name for p in pods] == ["ranker-0"]
    pod = pods[0]
    assert pod.status.pod_ip == ip
    assert [i.ip for i in pod.status.pod_ips] == [ip]
    ready = {c.type: c.status for c in pod.status.conditions}
    assert ready["Ready"] == "True"
    assert pod.status.phase == "Running"


@pytest.mark.timeout(90)
def test_watch_receives_status_change(
    local_control_plane: ControlPlane, kube_api: Any, namespace: str
) -> None:
    v1: Any = client.CoreV1Api(kube_api)
    v1.create_namespaced_pod(namespace, _pod("ranker-1", {"app": "ranker"}))
    ip = _loopback_ip()
    seen: list[tuple[str, str | None]] = []
    opened = threading.Event()
    w = _watch()

    def consume() -> None:
        rv = v1.list_namespaced_pod(
            namespace, label_selector="app=ranker"
        ).metadata.resource_version
        opened.set()
        for event in w.stream(
            v1.list_namespaced_pod,
            namespace,
            label_selector="app=ranker",
            resource_version=rv,
            timeout_seconds=30,
        ):
            seen.append((event["type"], event["object"].status.pod_ip))
            if event["object"].status.pod_ip == ip:
                w.stop()
                return

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    assert opened.wait(10)
    v1.patch_namespaced_pod_status("ranker-1", namespace, _running_status(ip))
    t.join(40)
    assert not t.is_alive(), f"watch saw no change with podIP {ip}: {seen}"
    assert ("MODIFIED", ip) in seen

    # and the pod going away (kill the process, delete the Pod with grace 0) is seen too
    rv = v1.list_namespaced_pod(namespace).metadata.resource_version
    v1.delete_namespaced_pod("ranker-1", namespace, grace_period_seconds=0)
    w2 = _watch()
    events = [
        e["type"]
        for e in w2.stream(
            v1.list_namespaced_pod, namespace, resource_version=rv, timeout_seconds=5
        )
    ]
    assert "DELETED" in events


@pytest.mark.timeout(90)
def test_kubectl_get_and_wait_on_fake_pod(
    local_control_plane: ControlPlane, namespace: str
) -> None:
    cp = local_control_plane
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_pod("r", {"app": "r"})))
    waiting = cp.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "pod/r", "--timeout=2s", check=False
    )
    assert waiting.returncode != 0  # nothing made it Ready yet
    ip = _loopback_ip()
    cp.kubectl(
        "patch", "-n", namespace, "pod/r", "--subresource=status", "--type=merge",
        "-p", json.dumps(_running_status(ip)),
    )  # fmt: skip
    cp.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/r", "--timeout=30s")
    got = cp.kubectl(
        "get", "pods", "-n", namespace, "-l", "app=r", "-o", "jsonpath={.items[0].status.podIP}"
    ).stdout
    assert got == ip
    table = cp.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
    assert "Running" in table and ip in table and "fake-node" in table
