"""`helm install` on the real API server, then the operator, run with the chart's own RBAC
identity (a token of the chart's operator ServiceAccount) and the chart's own arguments, rolls
an ArtifactVersion out to ranker pods labelled like the chart's Deployment; a promotion with
kubectl survives a `helm upgrade`.

The ranker pods are local processes (rankswap_dev.localkube.pods, started by rankswap_dev.launch), as in the operator's end-to-end
tests: there is no kubelet here, so the chart's Deployments themselves create no pods.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from tests.integration.deploy.layout import CHART
from tests.support.services import free_port
from tests.support.world import World

from rankswap.artifacts import artifact_uri
from rankswap_dev.launch import OperatorProcess, RankerProcess
from rankswap_dev.localkube import ControlPlane
from rankswap_dev.localkube.pods import (
    ADMIN_PORT,
    PUBLIC_PORT,
    FakeKubelet,
    next_pod_ip,
    pod_ranker,
)
from rankswap_dev.wait import WaitTimeout, wait_until

pytestmark = [pytest.mark.integration]

GROUP, VERSION, PLURAL = "rankswap.io", "v1alpha1", "artifactversions"
AV = "lineitems"


def bundle_uris(world: World, when: date) -> dict[str, Any]:
    return {
        "model": {"uri": artifact_uri(world.file_root, "model", world.model_name, when)},
        "features": {"uri": artifact_uri(world.file_root, "features", world.schema, when)},
    }


def local_values(world: World, namespace: str, when: date) -> dict[str, Any]:
    """What differs from values-dev.yaml on this machine: the artifact root is a local folder,
    the local pods listen on their own ports, the operator watches the test namespace only."""
    return {
        "operator": {
            "watchNamespaces": [namespace],
            "busyIntervalSeconds": 0.3,
            "idleIntervalSeconds": 3,
        },
        "ranker": {
            "replicas": 2,
            "allowedRoots": world.roots,
            "ports": {"public": PUBLIC_PORT, "admin": ADMIN_PORT},
            "database": {"secretName": "rankswap-db"},
        },
        "artifactVersion": {"name": AV, **bundle_uris(world, when)},
    }


def deployment(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        cluster.kubectl("get", "deployment", name, "-n", namespace, "-o", "json").stdout
    )
    return doc


def wait_for(
    what: str, check: Callable[[], dict[str, Any] | None], timeout: float
) -> dict[str, Any]:
    try:
        return wait_until(check, timeout, 0.3, what=what)
    except WaitTimeout:
        raise AssertionError(f"{what}: not reached in {timeout:.0f}s") from None


class Installed:
    """One helm release in a test namespace, its local ranker pods and its operator."""

    def __init__(self, cluster: ControlPlane, namespace: str, world: World, work: Path) -> None:
        self.cluster, self.namespace, self.world, self.work = cluster, namespace, world, work
        self.release = f"rs-{namespace.rsplit('-', 1)[-1]}"
        self.fullname = f"{self.release}-rankswap"
        self.values = work / "local-values.yaml"
        self.api = cluster.api_client()
        self.core: Any = client.CoreV1Api(self.api)
        self.custom: Any = client.CustomObjectsApi(self.api)
        self.kubelet = FakeKubelet(self.core, namespace)
        self.rankers: list[RankerProcess] = []
        self.operator: OperatorProcess | None = None
        self.metrics_port = 0

    def helm(self, verb: str) -> None:
        self.cluster.helm(
            verb,
            self.release,
            str(CHART),
            "-n",
            self.namespace,
            "-f",
            str(CHART / "values-dev.yaml"),
            "-f",
            str(self.values),
            timeout=120,
        )

    def secret(self, name: str, key: str) -> str:
        data = self.core.read_namespaced_secret(name, self.namespace).data
        return base64.b64decode(data[key]).decode()

    def start_pods(self) -> None:
        """Ranker pods as the chart's Deployment would make them: its pod labels, its settings
        (ConfigMap), its admin token and database Secrets."""
        template = deployment(self.cluster, self.namespace, f"{self.fullname}-ranker")["spec"][
            "template"
        ]
        settings = self.core.read_namespaced_config_map(
            f"{self.fullname}-ranker-env", self.namespace
        ).data
        token = self.secret(f"{self.fullname}-ranker-admin", "token")
        database_url = self.secret("rankswap-db", "url")
        self.kubelet.start()
        for i in range(2):
            ranker = pod_ranker(
                f"{self.fullname}-ranker-{i}",
                next_pod_ip(),
                self.work / f"pod-{i}",
                database_url=database_url,
                allowed_roots=settings["RANKSWAP_ALLOWED_ROOTS"].split(","),
                token=token,
                workers=int(settings["RANKSWAP_WORKERS"]),
                settings={"RANKSWAP_WORKER_POLL_INTERVAL_S": "0.1"},
            ).start()
            self.rankers.append(ranker)
            self.kubelet.add(ranker, template["metadata"]["labels"])

    def start_operator(self) -> None:
        """The chart's operator container (its arguments, its literal settings), as a local
        process authenticated as the chart's ServiceAccount."""
        container = deployment(self.cluster, self.namespace, f"{self.fullname}-operator")["spec"][
            "template"
        ]["spec"]["containers"][0]
        args = [
            f"--liveness=http://127.0.0.1:{free_port()}/healthz"
            if a.startswith("--liveness=")
            else a
            for a in container["args"]
        ]
        assert f"--namespace={self.namespace}" in args
        kubeconfig = self.cluster.service_account_kubeconfig(
            self.namespace, f"{self.fullname}-operator", create=False
        )
        literal = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        # The chart's metrics port, moved to a free one (many operators share this machine).
        assert literal["RANKSWAP_OPERATOR_METRICS_PORT"] == "9090"
        self.metrics_port = free_port()
        literal["RANKSWAP_OPERATOR_METRICS_PORT"] = str(self.metrics_port)
        self.operator = OperatorProcess(
            args, kubeconfig, self.work / "operator.log", literal
        ).start()

    def av(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, AV
        )
        return obj

    def wait_serving(self, when: date, timeout: float = 60) -> dict[str, Any]:
        versions = self.world.versions[when]

        def serving() -> dict[str, Any] | None:
            obj = self.av()
            st = obj.get("status") or {}
            ready = {c["type"]: c["status"] for c in st.get("conditions") or []}.get("Ready")
            pods = st.get("pods") or []
            ok = (
                st.get("observedGeneration") == obj["metadata"]["generation"]
                and ready == "True"
                and st.get("updated") == "2/2"
                and len(pods) == 2
                and all((p.get("modelVersion"), p.get("featuresVersion")) == versions for p in pods)
            )
            return obj if ok else None

        try:
            return wait_for(f"both pods serving {when}", serving, timeout)
        except AssertionError:
            log = (self.work / "operator.log").read_text(errors="replace")[-3000:]
            raise AssertionError(
                f"not serving {when}; status {json.dumps(self.av().get('status'))[:2000]}\noperator log:\n{log}"
            ) from None

    def stop(self) -> None:
        self.kubelet.stop()
        for ranker in self.rankers:
            ranker.stop()
        # Let the running operator remove its finalizer, then stop it.
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, AV)
        except client.ApiException as exc:
            if exc.status != 404:  # not installed: the test failed before `helm install`
                raise
        with contextlib.suppress(WaitTimeout):
            wait_until(
                lambda: (
                    not self.custom.list_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL
                    )["items"]
                ),
                15,
                0.2,
                what="the operator removed its finalizer",
            )
        if self.operator is not None:
            self.operator.stop(10)
        for obj in self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL
        )["items"]:
            self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                obj["metadata"]["name"],
                {"metadata": {"finalizers": []}},
            )
        self.cluster.helm("uninstall", self.release, "-n", self.namespace, check=False)
        self.api.close()


@pytest.fixture
def installed(
    local_control_plane: ControlPlane,
    namespace: str,
    crd_installed: None,
    world: World,
    tmp_path: Path,
) -> Iterator[Installed]:
    inst = Installed(local_control_plane, namespace, world, tmp_path)
    try:
        yield inst
    finally:
        inst.stop()


@pytest.mark.timeout(240)
def test_helm_install_then_the_operator_rolls_out_with_the_charts_identity(
    installed: Installed, world: World
) -> None:
    inst, cluster, ns = installed, installed.cluster, installed.namespace
    d1, d2 = world.dates
    inst.values.write_text(yaml.safe_dump(local_values(world, ns, d1)))
    cluster.kubectl(
        "create", "secret", "generic", "rankswap-db", "-n", ns, f"--from-literal=url={world.db_url}"
    )
    inst.helm("install")  # values-dev.yaml: the chart creates the admin token Secret

    # The chart's identity may read its admin token Secret and no other Secret.
    sa = f"system:serviceaccount:{ns}:{inst.fullname}-operator"

    def can(*args: str) -> str:
        done = cluster.kubectl("auth", "can-i", *args, "-n", ns, f"--as={sa}", check=False)
        return done.stdout.strip()

    assert can("get", f"secret/{inst.fullname}-ranker-admin") == "yes"
    assert can("get", "secret/rankswap-db") == "no"
    assert can("list", "secrets") == "no"
    assert can("patch", f"{PLURAL}.{GROUP}/status") == "yes"
    assert can("delete", "pods") == "no"

    inst.start_pods()
    inst.start_operator()
    obj = inst.wait_serving(d1)
    assert obj["spec"]["admin"] == {
        "port": ADMIN_PORT,
        "tokenSecretRef": {"name": f"{inst.fullname}-ranker-admin", "key": "token"},
    }
    reasons = {
        e.reason
        for e in inst.core.list_namespaced_event(
            ns, field_selector=f"involvedObject.name={AV}"
        ).items
    }
    assert "RolloutSucceeded" in reasons, reasons
    # The operator's /metrics mirrors the status it wrote (the alerts read these series).
    metrics = httpx.get(f"http://127.0.0.1:{inst.metrics_port}/metrics", timeout=5).text
    labels = f'artifactversion="{AV}",namespace="{ns}"'
    assert f'rankswap_operator_condition{{{labels},type="Ready"}} 1.0' in metrics, metrics
    assert f"rankswap_operator_rollout_failed{{{labels}}} 0.0" in metrics, metrics
    assert (
        f'rankswap_operator_events_total{{{labels},reason="RolloutSucceeded",type="Normal"}} 1.0'
        in metrics
    )

    # Promote with kubectl (docs/INSTALL.md); a later `helm upgrade` keeps the promotion.
    cluster.kubectl(
        "patch",
        "av",
        AV,
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": bundle_uris(world, d2)}),
    )
    inst.wait_serving(d2)
    token = inst.secret(f"{inst.fullname}-ranker-admin", "token")
    inst.helm("upgrade")
    spec = inst.av()["spec"]
    assert spec["model"] == bundle_uris(world, d2)["model"]
    assert inst.secret(f"{inst.fullname}-ranker-admin", "token") == token  # kept across upgrades
