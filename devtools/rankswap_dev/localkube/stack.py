"""The whole of rankswap on one machine: control plane, CRD, RBAC, operator, local ranker pods.

Used by ``make demo`` and the rollout benchmark. The operator runs as its ServiceAccount with
the RBAC of manifests/operator/rbac.yaml (never as cluster admin); ranker pods are Pod objects
whose containers are local ``rankswap serve`` processes (see :mod:`rankswap_dev.localkube.pods`).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from rankswap import featurespec as fs
from rankswap.artifacts import artifact_uri, read_manifest
from rankswap_dev.launch import OperatorProcess, RankerProcess, operator_args
from rankswap_dev.localkube import ControlPlane, ensure_binaries
from rankswap_dev.localkube.pods import FakeKubelet, next_pod_ip, pod_ranker
from rankswap_dev.wait import wait_until

REPO = Path(__file__).resolve().parents[3]
NAMESPACE, OPERATOR_NAMESPACE = "rankswap", "rankswap-system"
LABELS = {"app.kubernetes.io/name": "rankswap-ranker"}
TOKEN_SECRET = "rankswap-ranker-admin"


class LocalStack:
    def __init__(self, work: Path, *, database_url: str, store: str) -> None:
        self.work = work
        self.database_url = database_url
        self.store = store
        self.plane = ControlPlane(work / "kube", bin_dir=ensure_binaries(quiet=True))
        self.token = secrets.token_hex(16)
        self.rankers: list[RankerProcess] = []
        self.kubelet: FakeKubelet | None = None
        self.operator: OperatorProcess | None = None
        self._api: Any = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, input=input, check=check)

    def start(self) -> LocalStack:
        from kubernetes import client

        self.plane.start()
        self.kubectl("apply", "--server-side", "-f", str(REPO / "manifests" / "crd"))
        self.kubectl("wait", "--for=condition=Established", "crd/artifactversions.rankswap.io")
        for ns in (NAMESPACE, OPERATOR_NAMESPACE):
            self.kubectl("create", "namespace", ns)
        self.kubectl("apply", "-f", str(REPO / "manifests" / "operator" / "rbac.yaml"))
        self.kubectl(
            "create",
            "secret",
            "generic",
            TOKEN_SECRET,
            "-n",
            NAMESPACE,
            f"--from-literal=token={self.token}",
        )
        self.start_operator()
        self._api = self.plane.api_client()
        self.kubelet = FakeKubelet(client.CoreV1Api(self._api), NAMESPACE).start()
        return self

    def start_operator(self) -> None:
        kubeconfig = self.plane.service_account_kubeconfig(
            OPERATOR_NAMESPACE, "rankswap-operator", create=False
        )
        self.operator = OperatorProcess(
            operator_args(NAMESPACE, "http://127.0.0.1:0/healthz"),
            kubeconfig,
            self.work / "operator.log",
            {"RANKSWAP_OPERATOR_BUSY_INTERVAL_S": "0.3"},
        ).start()

    def add_ranker(
        self, name: str, *, workers: int = 1, settings: dict[str, str] | None = None
    ) -> RankerProcess:
        assert self.kubelet is not None, "start() first"
        ranker = pod_ranker(
            name,
            next_pod_ip(),
            self.work / name,
            database_url=self.database_url,
            allowed_roots=[self.store],
            token=self.token,
            workers=workers,
            settings=settings,
        ).start()
        self.rankers.append(ranker)
        self.kubelet.add(ranker, LABELS)
        return ranker

    def artifact_version(
        self, name: str, when: Any, *, rollout: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        features = read_manifest(
            artifact_uri(self.store, "features", fs.FEATURE_SCHEMA_VERSION, when)
        )
        return {
            "apiVersion": "rankswap.io/v1alpha1",
            "kind": "ArtifactVersion",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "selector": {"matchLabels": LABELS},
                "model": {"uri": artifact_uri(self.store, "model", "line-items", when)},
                "features": {"uri": artifact_uri(self.store, "features", features.name, when)},
                "admin": {"port": 18081, "tokenSecretRef": {"name": TOKEN_SECRET}},
                "rollout": rollout or {"strategy": "AllAtOnce"},
            },
        }

    def apply(self, body: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(body))

    def status(self, name: str) -> dict[str, Any]:
        out = self.kubectl("get", "av", name, "-n", NAMESPACE, "-o", "json", check=False)
        if out.returncode != 0:
            return {}
        doc: dict[str, Any] = json.loads(out.stdout).get("status") or {}
        return doc

    def serving(self, name: str, model_version: str, *, pods: int) -> bool:
        """Ready, and every one of ``pods`` pods confirmed on ``model_version``."""
        st = self.status(name)
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or []
        )
        listed = st.get("pods") or []
        return (
            ready
            and len(listed) == pods
            and all(p.get("modelVersion") == model_version for p in listed)
        )

    def wait_serving(
        self, name: str, model_version: str, *, pods: int, timeout: float = 120
    ) -> float:
        start = time.monotonic()
        wait_until(
            lambda: self.serving(name, model_version, pods=pods),
            timeout,
            0.05,
            what=f"{name}: {pods} pods on {model_version}",
            detail=lambda: f"status: {self.status(name)}",
        )
        return time.monotonic() - start

    def stop(self) -> None:
        if self.kubelet is not None:
            self.kubelet.stop()
        for ranker in self.rankers:
            ranker.stop()
        if self.operator is not None:
            self.operator.stop(15)
        if self._api is not None:
            self._api.close()
        self.plane.stop()
