"""The chart's NetworkPolicy, enforced on the real node (kube-router's policy controller): the
ranker's admin port answers only this release's operator pods in the release's namespace; the
public port answers anyone.

The pods are stand-ins with the chart's labels and port names (a two-port TCP responder in the
operator image), so the test needs no product DB or bundles; the policy is the one `helm template`
renders from the dev values. Every "refused" is checked against a "reached" of the same pair
before the policy exists and after it is deleted, so a broken probe cannot pass as a policy.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rankswap_dev.localkube.node import NodeCluster
from rankswap_dev.wait import wait_until

pytestmark = [pytest.mark.node]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "rankswap"
NS = "np-release"
OTHER_NS = "np-elsewhere"
RELEASE = "rs"
PUBLIC, ADMIN = 8080, 8081

# Answers every connection on both ports with its port number.
RESPONDER = f"""
import socket, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b"port %d" % port); c.close()
threading.Thread(target=serve, args=({PUBLIC},), daemon=True).start()
serve({ADMIN})
"""
PROBE = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as s:
    print(s.recv(16).decode())
"""


def image_name(archive: Path) -> str:
    """The image reference stored in an OCI archive made by scripts/images.sh."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        index = json.load(member)
    return str(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])


def pod(name: str, namespace: str, labels: dict[str, str], image: str, serve: bool) -> Any:
    code = RESPONDER if serve else "import time; time.sleep(10**6)"
    container: dict[str, Any] = {
        "name": "c",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["python3", "-c", code],
    }
    if serve:
        container["ports"] = [
            {"name": "http", "containerPort": PUBLIC},
            {"name": "admin", "containerPort": ADMIN},
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 0},
    }


def chart_policy(node: NodeCluster) -> str:
    """The ranker NetworkPolicy exactly as the chart renders it with the dev values."""
    return node.helm(
        "template", RELEASE, str(CHART), "-f", str(CHART / "values-dev.yaml"),
        "--namespace", NS, "--show-only", "templates/ranker-networkpolicy.yaml",
    ).stdout  # fmt: skip


@pytest.fixture
def stand_ins(node: NodeCluster, images: dict[str, Path]) -> Iterator[str]:
    image = image_name(images["operator"])
    ranker = {"app.kubernetes.io/name": "rankswap-ranker", "app.kubernetes.io/instance": RELEASE}
    operator = {
        "app.kubernetes.io/name": "rankswap-operator",
        "app.kubernetes.io/instance": RELEASE,
    }
    for ns in (NS, OTHER_NS):
        node.kubectl("create", "namespace", ns)
    pods = [
        pod("ranker", NS, ranker, image, serve=True),
        pod("operator", NS, operator, image, serve=False),
        pod("stranger", NS, {"app": "stranger"}, image, serve=False),
        # The operator's labels in another namespace: the policy's namespaceSelector refuses it.
        pod("impostor", OTHER_NS, operator, image, serve=False),
    ]
    try:
        node.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}),
        )
        for ns, names in ((NS, ["ranker", "operator", "stranger"]), (OTHER_NS, ["impostor"])):
            node.kubectl(
                "wait", "-n", ns, "--for=condition=Ready", *[f"pod/{n}" for n in names],
                "--timeout=180s", timeout=200,
            )  # fmt: skip
        ip = node.kubectl("get", "pod", "-n", NS, "ranker", "-o", "jsonpath={.status.podIP}")
        yield ip.stdout.strip()
    finally:
        for ns in (NS, OTHER_NS):
            node.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def reachable(node: NodeCluster, ns: str, client: str, ip: str) -> dict[str, bool]:
    """Which of the ranker's ports a pod reaches (a TCP connect and the responder's answer)."""
    found = {}
    for port_name, port in (("public", PUBLIC), ("admin", ADMIN)):
        probe = node.kubectl(
            "exec", "-n", ns, client, "--", "python3", "-c", PROBE, ip, str(port),
            check=False, timeout=30,
        )  # fmt: skip
        found[port_name] = probe.returncode == 0 and f"port {port}" in probe.stdout
    return found


def matrix(node: NodeCluster, ip: str) -> dict[str, dict[str, bool]]:
    return {
        "operator": reachable(node, NS, "operator", ip),
        "stranger": reachable(node, NS, "stranger", ip),
        "impostor": reachable(node, OTHER_NS, "impostor", ip),
    }


def until(node: NodeCluster, ip: str, expected: dict[str, dict[str, bool]]) -> None:
    """kube-router applies a policy change within its sync (about a second here); wait for it."""
    seen: list[dict[str, dict[str, bool]]] = []

    def matches() -> bool:
        seen.append(matrix(node, ip))
        return seen[-1] == expected

    wait_until(
        matches, timeout=90, interval=1.0, what=f"reachability {expected}",
        detail=lambda: f"last seen {seen[-1:]}",
    )  # fmt: skip


@pytest.mark.timeout(600)
def test_the_admin_port_answers_only_the_release_operator_once_the_chart_policy_exists(
    node: NodeCluster, stand_ins: str
) -> None:
    ip = stand_ins
    everyone = {"public": True, "admin": True}
    open_matrix = {"operator": everyone, "stranger": everyone, "impostor": everyone}
    # Without the policy every pod reaches both ports: the probe itself works.
    assert matrix(node, ip) == open_matrix

    node.kubectl("apply", "-f", "-", input=chart_policy(node))
    until(
        node,
        ip,
        {
            "operator": everyone,
            "stranger": {"public": True, "admin": False},
            "impostor": {"public": True, "admin": False},
        },
    )

    # Deleting the policy opens the port again: the refusals came from the policy.
    node.kubectl("delete", "networkpolicy", "-n", NS, "--all")
    until(node, ip, open_matrix)
