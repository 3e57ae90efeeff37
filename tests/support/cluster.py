"""A load generator for end-to-end tests: ``/v1/rank`` requests to every ready pod, failures counted."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from rankswap_dev.launch import RankerProcess


@dataclass
class LoadGenerator:
    """Sends rank requests to the ready pods until stopped; every non-200 answer is a failure."""

    targets: Callable[[], list[RankerProcess]]
    requests: list[dict[str, Any]]
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    versions_seen: set[tuple[str, str]] = field(default_factory=set)
    versions_by_tenant: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
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
                        seen = (doc["model_version"], doc["features_version"])
                        self.versions_seen.add(seen)
                        self.versions_by_tenant.setdefault(body["tenant_id"], set()).add(seen)
                    time.sleep(0.01)

        self._thread = threading.Thread(target=loop, name="load-generator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
