"""Ranker pods as local processes, for the demo and the tests (no kubelet, no containers).

A Pod object is created in the API server, and a ranker process (:func:`pod_ranker`, ``rankswap
serve``) listens on the pod's own loopback address 127.B.x.y, where B is a block this process
holds a lock on (:func:`next_pod_ip`), so two test sessions on one machine never share one. :class:`FakeKubelet` plays the
kubelet's part: it writes ``podIP`` and ``phase`` into the Pod's status and keeps its ``Ready``
condition equal to the process's ``/readyz`` (what a readiness probe would do). The operator
then reaches the process exactly as it reaches a pod IP in a real cluster.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from rankswap_dev.launch import RankerProcess

PUBLIC_PORT = 18080
ADMIN_PORT = 18081
_ips = itertools.count(0)
_block_lock = threading.Lock()
_block: tuple[int, int] | None = None  # (second octet, fd of its lock file), held for life


def claim_address_block(lock_dir: Path | None = None) -> int:
    """The second octet of a 127.B.0.0/16 block no other live process on this machine holds.

    A lock file per block (``flock``, released by the kernel when the process ends, so a killed
    test session frees its block) keeps parallel test sessions, and helpers' worktrees, from
    binding the same pod address. Block 0 (127.0.0.1 and friends) is never used.
    """
    directory = lock_dir or Path(tempfile.gettempdir())
    for block in range(1, 255):
        fd = os.open(directory / f"rankswap-podnet-{block}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        global _block
        _block = (block, fd)
        return block
    raise RuntimeError(f"every 127.B.0.0/16 pod address block is held ({directory})")


def next_pod_ip() -> str:
    """A loopback address no other local pod uses: 127.B.x.y in this process's own block."""
    with _block_lock:
        block = _block[0] if _block is not None else claim_address_block()
    n = next(_ips)
    return f"127.{block}.{n // 250}.{n % 250 + 2}"


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
