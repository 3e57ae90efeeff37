"""Real ranker processes (``python -m rankswap.cli serve``, 2 workers) on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from rankswap_dev.launch import RankerProcess, log_tail
from rankswap_dev.wait import wait_until

TOKEN = "integration-token"
WORKERS = 2


class RankerPod(RankerProcess):
    """A ranker pod for these tests (the launcher's process, ports chosen by the kernel), with
    the waits and calls the tests share."""

    def wait(self, check: Callable[[], bool], timeout: float, what: str = "condition") -> None:
        wait_until(
            check,
            timeout,
            0.1,
            what=what,
            ignore=(httpx.HTTPError, KeyError, TypeError),
            detail=lambda: f"log: {log_tail(self.log)}",
        )

    def push_and_settle(
        self, model_uri: str, features_uri: str, timeout: float = 60
    ) -> dict[str, Any]:
        r = self.push(model_uri, features_uri)
        assert r.status_code == 202, r.text
        rid = r.json()["request_id"]
        result: dict[str, Any] = {}

        def settled() -> bool:
            doc = self.state()
            desired = doc["desired"]
            if desired["request_id"] != rid or desired["status"] in ("loading", "pending"):
                return False
            if desired["status"] == "loaded" and not doc["converged"]:
                return False
            result.update(doc)
            return True

        self.wait(settled, timeout, f"request {rid} settled")
        return result

    def rank(self, body: dict[str, Any]) -> httpx.Response:
        # A new connection each time, so the kernel may hand it to either worker.
        return httpx.post(
            f"{self.public_url}/v1/rank", json=body, timeout=10, headers={"Connection": "close"}
        )


@pytest.fixture(scope="module")
def start_ranker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RankerPod]]:
    started: list[RankerPod] = []

    def start(**env: str) -> RankerPod:
        settings = {f"RANKSWAP_{k.upper()}": v for k, v in env.items()}
        proc = RankerPod(
            tmp_path_factory.mktemp("ranker"),
            TOKEN,
            workers=WORKERS,
            settings={"RANKSWAP_WORKER_POLL_INTERVAL_S": "0.1", **settings},
        )
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()
