"""Ranker pods as local processes, for the demo and the tests (no kubelet, no containers).

A Pod object is created in the API server, and a ranker process (:func:`pod_ranker`, ``rankswap
serve``) listens on the pod's own loopback address 127.0.0.N. :class:`FakeKubelet` plays the
kubelet's part: it writes ``podIP`` and ``phase`` into the Pod's status and keeps its ``Ready``
condition equal to the process's ``/readyz`` (what a readiness probe would do). The operator
then reaches the process exactly as it reaches a pod IP in a real cluster.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from rankswap_dev.launch import RankerProcess

PUBLIC_PORT = 18080
ADMIN_PORT = 18081
_ips = itertools.count(20)


def next_pod_ip() -> str:
    """A loopback address no other local pod of this process uses (127.0.0.22, .23, ...)."""
    n = next(_ips)
    return f"127.0.{n // 250}.{n % 250 + 2}"


def pod_ranker(
    name: str,
    ip: str,
    work: Path,
    *,
    database_url: str,
    allowed_roots: list[str],
    token: str,
    workers: int = 1,
    settings: dict[str, str] | None = None,
) -> RankerProcess:
    """A ranker pod's container: ``rankswap serve`` on the pod's own address ``ip`` and the
    pod ports of the manifests (call ``.start()``)."""
    return RankerProcess(
        work,
        token,
        name=name,
        host=ip,
        public_port=PUBLIC_PORT,
        admin_port=ADMIN_PORT,
        workers=workers,
        settings={
            "RANKSWAP_DATABASE_URL": database_url,
            "RANKSWAP_ALLOWED_ROOTS": ",".join(allowed_roots),
            "RANKSWAP_CACHE_DIR": str(work / "cache"),
            **(settings or {}),
        },
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_pod(core: Any, namespace: str, name: str, labels: dict[str, str]) -> None:
    """A Pod object for a local process (``core`` is a ``kubernetes.client.CoreV1Api``)."""
    core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "nodeName": "local-processes",
                "automountServiceAccountToken": False,
                "containers": [{"name": "ranker", "image": "rankswap/ranker:local"}],
            },
        },
    )


def set_pod_status(
    core: Any, namespace: str, name: str, ip: str | None, *, running: bool, ready: bool
) -> None:
    """What the kubelet would write: phase, pod IP, and the readiness conditions."""
    flag = "True" if ready else "False"
    status: dict[str, Any] = {
        "phase": "Running" if running else "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()},
            {"type": "Initialized", "status": "True", "lastTransitionTime": _now()},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": _now()},
            {"type": "Ready", "status": flag, "lastTransitionTime": _now()},
        ],
    }
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
        status["hostIP"] = "127.0.0.1"
    core.patch_namespaced_pod_status(name, namespace, {"status": status})


@dataclass
class FakeKubelet:
    """Keeps each Pod's status in step with its local ranker (probing ``/readyz``)."""

    core: Any
    namespace: str
    pods: dict[str, RankerProcess] = field(default_factory=dict)
    probe_interval_s: float = 0.3
    _ready: dict[str, bool] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, ranker: RankerProcess, labels: dict[str, str]) -> None:
        create_pod(self.core, self.namespace, ranker.name, labels)
        set_pod_status(
            self.core, self.namespace, ranker.name, ranker.host, running=True, ready=False
        )
        with self._lock:
            self.pods[ranker.name] = ranker
            self._ready[ranker.name] = False

    def remove(self, name: str) -> None:
        with self._lock:
            self.pods.pop(name, None)
            self._ready.pop(name, None)
        self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)

    def ready_pods(self) -> list[RankerProcess]:
        with self._lock:
            return [self.pods[n] for n, r in self._ready.items() if r]

    def probe_once(self) -> None:
        with self._lock:
            pods = list(self.pods.items())
        for name, ranker in pods:
            try:
                ready = httpx.get(f"{ranker.public_url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready != self._ready.get(name):
                set_pod_status(
                    self.core, self.namespace, name, ranker.host, running=True, ready=ready
                )
                with self._lock:
                    if name in self._ready:
                        self._ready[name] = ready

    def start(self) -> FakeKubelet:
        def loop() -> None:
            while not self._stop.wait(self.probe_interval_s):
                try:
                    self.probe_once()
                except Exception:
                    continue

        self._thread = threading.Thread(target=loop, name="fake-kubelet", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
