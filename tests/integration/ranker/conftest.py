"""Real ranker processes (``python -m rankswap.cli serve``, 2 workers) on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

TOKEN = "integration-token"
WORKERS = 2


class RankerProcess:
    """One ranker pod: a supervisor process and its workers, ports chosen by the kernel."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work = work
        self.log = work / "ranker.log"
        self.run_dir = work / "run"
        token_file = work / "admin-token"
        token_file.write_text(TOKEN + "\n")
        full_env = {
            **os.environ,
            "RANKSWAP_PUBLIC_HOST": "127.0.0.1",
            "RANKSWAP_PUBLIC_PORT": "0",
            "RANKSWAP_ADMIN_HOST": "127.0.0.1",
            "RANKSWAP_ADMIN_PORT": "0",
            "RANKSWAP_WORKERS": str(WORKERS),
            "RANKSWAP_RUN_DIR": str(self.run_dir),
            "RANKSWAP_ADMIN_TOKEN_FILE": str(token_file),
            "RANKSWAP_WORKER_POLL_INTERVAL_S": "0.1",
            **env,
        }
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rankswap.cli", "serve"],
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ports = self._wait_for_ports(timeout=60)
        self.public = f"http://127.0.0.1:{ports['public']}"
        self.admin = f"http://127.0.0.1:{ports['admin']}"
        self.auth = {"Authorization": f"Bearer {TOKEN}"}
        self.wait(lambda: httpx.get(f"{self.public}/healthz", timeout=2).status_code == 200, 60)

    def _wait_for_ports(self, timeout: float) -> dict[str, int]:
        path = self.run_dir / "ports.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ranker exited: {self.log.read_text()[-3000:]}")
            with contextlib.suppress(FileNotFoundError, ValueError):
                doc = json.loads(path.read_text())
                if doc.get("pid") == self.proc.pid:
                    return {k: int(v) for k, v in doc.items()}
            time.sleep(0.1)
        raise TimeoutError(f"no ports.json after {timeout}s: {self.log.read_text()[-3000:]}")

    def wait(self, check: Callable[[], bool], timeout: float, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (httpx.HTTPError, KeyError, TypeError) as exc:
                last = exc
            time.sleep(0.1)
        raise TimeoutError(
            f"{what} not reached in {timeout}s ({last}); log: {self.log.read_text()[-3000:]}"
        )

    # Admin calls -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        r = httpx.get(f"{self.admin}/admin/v1/state", headers=self.auth, timeout=5)
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc

    def push(self, model_uri: str, features_uri: str, **extra: Any) -> httpx.Response:
        return httpx.put(
            f"{self.admin}/admin/v1/bundle",
            json={"model_uri": model_uri, "features_uri": features_uri, **extra},
            headers=self.auth,
            timeout=5,
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
            f"{self.public}/v1/rank", json=body, timeout=10, headers={"Connection": "close"}
        )

    # Life --------------------------------------------------------------------------------

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture(scope="module")
def start_ranker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RankerProcess]]:
    started: list[RankerProcess] = []

    def start(**env: str) -> RankerProcess:
        work = tmp_path_factory.mktemp("ranker")
        proc = RankerProcess(work, {f"RANKSWAP_{k.upper()}": v for k, v in env.items()})
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
