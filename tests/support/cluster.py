"""Helpers for tests that drive ranker pods through a real API server.

* :class:`FakeKubelet` plays the part of the kubelet for Pod objects whose "containers" are
  local ranker processes: it sets ``podIP`` and ``phase`` and keeps the ``Ready`` condition
  equal to the process's ``/readyz`` (what a readiness probe would do).
* :class:`LoadGenerator` sends ``/v1/rank`` requests to every ready pod throughout a test and
  counts failures.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from kubernetes import client

from tests.support.rankers import RankerProcess

_ips = itertools.count(20)


def next_pod_ip() -> str:
    """A loopback address no other pod of this test session uses (127.0.0.20, .21, ...)."""
    n = next(_ips)
    return f"127.0.{n // 250}.{n % 250 + 2}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_pod(core: client.CoreV1Api, namespace: str, name: str, labels: dict[str, str]) -> None:
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
    core: client.CoreV1Api, namespace: str, name: str, ip: str | None, *, running: bool, ready: bool
) -> None:
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
    """Keeps each Pod's status in step with its ranker process (probing ``/readyz``)."""

    core: client.CoreV1Api
    namespace: str
    pods: dict[str, RankerProcess] = field(default_factory=dict)
    _ready: dict[str, bool] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, ranker: RankerProcess, labels: dict[str, str]) -> None:
        create_pod(self.core, self.namespace, ranker.name, labels)
        set_pod_status(self.core, self.namespace, ranker.name, ranker.ip, running=True, ready=False)
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
                    self.core, self.namespace, name, ranker.ip, running=True, ready=ready
                )
                with self._lock:
                    if name in self._ready:
                        self._ready[name] = ready

    def start(self) -> FakeKubelet:
        def loop() -> None:
            while not self._stop.wait(0.3):
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


@dataclass
class LoadGenerator:
    """Sends rank requests to the ready pods until stopped; every non-200 answer is a failure."""

    targets: Callable[[], list[RankerProcess]]
    requests: list[dict[str, Any]]
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    versions_seen: set[tuple[str, str]] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> LoadGenerator:
        rng = random.Random(7)

        def loop() -> None:
            with httpx.Client(timeout=5) as http:
                while not self._stop.is_set():
                    pods = self.targets()
                    if not pods:
                        time.sleep(0.05)
                        continue
                    pod = rng.choice(pods)
                    body = rng.choice(self.requests)
                    try:
                        response = http.post(f"{pod.public_url}/v1/rank", json=body)
                    except httpx.HTTPError as exc:
                        if pod in self.targets():  # a pod killed on purpose is not a failure
                            self.failures.append(f"{pod.name}: {type(exc).__name__}: {exc}")
                        continue
                    self.sent += 1
                    if response.status_code != 200:
                        self.failures.append(
                            f"{pod.name}: HTTP {response.status_code}: {response.text[:200]}"
                        )
                    else:
                        doc = response.json()
                        self.versions_seen.add((doc["model_version"], doc["features_version"]))
                    time.sleep(0.01)

        self._thread = threading.Thread(target=loop, name="load-generator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
