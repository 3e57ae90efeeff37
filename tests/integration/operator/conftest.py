"""End-to-end fixtures: real API server, real ranker processes as pods, the real operator.

The operator runs as a subprocess (``rankswap operator``) authenticated as a ServiceAccount
bound to the RBAC rules of manifests/operator/rbac.yaml, never as cluster admin.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.support.cluster import LoadGenerator
from tests.support.services import free_port
from tests.support.world import World

from rankswap.artifacts import artifact_uri
from rankswap.podstate import STARTUP_FILE
from rankswap_dev.launch import OperatorProcess, RankerProcess, operator_args
from rankswap_dev.localkube import ControlPlane
from rankswap_dev.localkube.pods import FakeKubelet, next_pod_ip, pod_ranker
from rankswap_dev.wait import WaitTimeout, wait_until

REPO = Path(__file__).resolve().parents[3]
CRD = REPO / "manifests" / "crd" / "artifactversions.rankswap.io.yaml"
RBAC = REPO / "manifests" / "operator" / "rbac.yaml"
TOKEN_SECRET = "rankswap-ranker-admin"
LABELS = {"app.kubernetes.io/name": "rankswap-ranker"}
GROUP, VERSION, PLURAL = "rankswap.io", "v1alpha1", "artifactversions"


def _namespaced_rbac(namespace: str) -> str:
    """manifests/operator/rbac.yaml, bound to a ServiceAccount in ``namespace``.

    The ClusterRole is used as is (bound by a RoleBinding, so it grants only in this namespace);
    the Secret Role moves to the test namespace.
    """
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    out = []
    for doc in docs:
        kind = doc["kind"]
        if kind == "ServiceAccount":
            doc["metadata"]["namespace"] = namespace
        elif kind == "ClusterRole":
            pass
        elif kind == "ClusterRoleBinding":
            doc = {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "rankswap-operator", "namespace": namespace},
                "roleRef": doc["roleRef"],
                "subjects": [
                    {"kind": "ServiceAccount", "name": "rankswap-operator", "namespace": namespace}
                ],
            }
        else:  # the Secret Role and its binding
            doc["metadata"]["namespace"] = namespace
            for subject in doc.get("subjects", []):
                subject["namespace"] = namespace
        out.append(doc)
    return yaml.safe_dump_all(out)


@dataclass
class Harness:
    cluster: ControlPlane
    namespace: str
    world: World
    work: Path
    core: Any  # kubernetes.client.CoreV1Api (untyped library)
    custom: Any  # kubernetes.client.CustomObjectsApi
    token: str
    kubelet: FakeKubelet
    rankers: dict[str, RankerProcess] = field(default_factory=dict)
    operator: OperatorProcess | None = None
    operator_kubeconfig: Path | None = None
    loads: list[LoadGenerator] = field(default_factory=list)

    # pods ---------------------------------------------------------------------------------
    def add_pod(
        self,
        name: str,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        startup_from: str | None = None,
    ) -> RankerProcess:
        """A ranker pod; with ``startup_from`` (an ArtifactVersion's name) it mounts that
        resource's start-up ConfigMap as the chart's Deployment does: read back from the API
        server now (absent: an empty volume, ``optional: true``) and projected like the kubelet."""
        ranker = pod_ranker(
            name,
            next_pod_ip(),
            self.work / name,
            database_url=self.world.db_url,
            allowed_roots=self.world.roots,
            token=self.token,
            workers=workers,
            settings={"RANKSWAP_WORKER_POLL_INTERVAL_S": "0.1", **(env or {})},
        )
        if startup_from is not None:
            ranker.config_maps["startup"] = self.startup_config_map(startup_from)
            ranker.settings["RANKSWAP_STARTUP_FILE"] = str(ranker.mount("startup") / STARTUP_FILE)
        self.rankers[name] = ranker  # registered first: stopped at teardown even if start fails
        ranker.start()
        self.kubelet.add(ranker, LABELS)
        return ranker

    def startup_config_map(self, av_name: str) -> dict[str, str] | None:
        """The data of ``av_name``'s start-up ConfigMap as the API server has it, or None."""
        try:
            obj = self.core.read_namespaced_config_map(f"{av_name}-startup", self.namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data: dict[str, str] = dict(obj.data or {})
        return data

    def kill_pod(self, name: str) -> None:
        """The pod goes away: it leaves the endpoints first (what a Service does on deletion, so
        no new request is routed to it), then its container is killed outright."""
        self.kubelet.remove(name)
        time.sleep(0.5)  # let requests already routed to it finish, as a preStop drain would
        self.rankers.pop(name).kill()

    # the resource -------------------------------------------------------------------------
    def av_body(
        self, name: str, when: date | str, *, root: str | None = None, **spec: Any
    ) -> dict[str, Any]:
        root = root or self.world.file_root
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ArtifactVersion",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "selector": {"matchLabels": LABELS},
                "model": {"uri": artifact_uri(root, "model", self.world.model_name, when)},  # type: ignore[arg-type]
                "features": {"uri": artifact_uri(root, "features", self.world.schema, when)},  # type: ignore[arg-type]
                "admin": {"port": 18081, "tokenSecretRef": {"name": TOKEN_SECRET}},
                **spec,
            },
        }

    def apply(self, body: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(body))

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return obj

    def wait_for(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 60,
        what: str = "",
    ) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def reached() -> dict[str, Any] | None:
            nonlocal last
            last = self.get(name)
            return last if predicate(last) else None

        try:
            return wait_until(reached, timeout, 0.2, what=what or "condition")
        except WaitTimeout as exc:
            raise AssertionError(
                f"{exc.what} not reached in {timeout}s; status: {json.dumps(last.get('status'), indent=1)[:3000]}"
            ) from None

    def wait_ready_on(
        self, name: str, when: date, *, pods: int, timeout: float = 60
    ) -> dict[str, Any]:
        versions = self.world.versions[when]

        def ok(obj: dict[str, Any]) -> bool:
            st = obj.get("status") or {}
            cond = {c["type"]: c for c in st.get("conditions") or []}
            return (
                st.get("observedGeneration") == obj["metadata"]["generation"]
                and cond.get("Ready", {}).get("status") == "True"
                and st.get("updated") == f"{pods}/{pods}"
                and (st.get("desired") or {}).get("modelVersion") == versions[0]
                and all(
                    (p.get("modelVersion"), p.get("featuresVersion")) == versions
                    for p in st.get("pods") or []
                )
            )

        return self.wait_for(name, ok, timeout=timeout, what=f"all {pods} pods Ready on {when}")

    def serving(
        self, pods: int, when: date, *, root: str | None = None, **pod_options: Any
    ) -> LoadGenerator:
        """``pods`` ranker pods serving ``when`` through the resource ``lineitems``, with a
        load generator sending requests to them from then on."""
        for i in range(pods):
            self.add_pod(f"ranker-{i}", **pod_options)
        self.apply(self.av_body("lineitems", when, root=root))
        self.wait_ready_on("lineitems", when, pods=pods)
        return self.load()

    def events(self, name: str) -> list[tuple[str, str, str]]:
        found = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        return [(e.type, e.reason, e.message) for e in found.items]

    # the operator -------------------------------------------------------------------------
    def start_operator(self) -> None:
        assert self.operator_kubeconfig is not None
        self.operator = OperatorProcess(
            operator_args(
                self.namespace, f"http://127.0.0.1:{free_port()}/healthz", log_level="INFO"
            ),
            self.operator_kubeconfig,
            self.work / "operator.log",
            {
                "RANKSWAP_OPERATOR_BUSY_INTERVAL_S": "0.3",
                "RANKSWAP_OPERATOR_IDLE_INTERVAL_S": "3",
                "RANKSWAP_OPERATOR_WATCH_SERVER_TIMEOUT_S": "30",
            },
        ).start()

    def kill_operator(self) -> None:
        if self.operator is not None:
            self.operator.kill()

    def load(self) -> LoadGenerator:
        gen = LoadGenerator(self.kubelet.ready_pods, self.world.sample_requests).start()
        self.loads.append(gen)
        return gen


@pytest.fixture
def harness(
    local_control_plane: ControlPlane,
    namespace: str,
    crd_installed: None,
    world: World,
    tmp_path: Path,
) -> Iterator[Harness]:
    cluster = local_control_plane
    cluster.kubectl("apply", "-f", "-", input=_namespaced_rbac(namespace))
    token = secrets.token_hex(16)
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        TOKEN_SECRET,
        "-n",
        namespace,
        f"--from-literal=token={token}",
    )
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    kubelet = FakeKubelet(core, namespace).start()
    h = Harness(
        cluster, namespace, world, tmp_path, core, client.CustomObjectsApi(api), token, kubelet
    )
    h.operator_kubeconfig = cluster.service_account_kubeconfig(
        namespace, "rankswap-operator", create=False
    )
    h.start_operator()
    try:
        yield h
    finally:
        for gen in h.loads:
            gen.stop()
        kubelet.stop()
        for ranker in h.rankers.values():
            ranker.stop()
        # Remove the operator's finalizers while it still runs, then stop it.
        for obj in h.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
            "items"
        ]:
            h.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, obj["metadata"]["name"]
            )
        with contextlib.suppress(WaitTimeout):
            wait_until(
                lambda: (
                    not h.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
                        "items"
                    ]
                ),
                15,
                0.2,
                what="the operator removed its finalizers",
            )
        if h.operator is not None:
            h.operator.stop(10)
        for obj in h.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
            "items"
        ]:
            h.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                obj["metadata"]["name"],
                {"metadata": {"finalizers": []}},
            )
        api.close()
        if os.environ.get("RANKSWAP_KEEP_LOGS"):
            shutil.copytree(
                tmp_path, Path(os.environ["RANKSWAP_KEEP_LOGS"]) / namespace, dirs_exist_ok=True
            )
