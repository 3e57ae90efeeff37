"""Real ranker processes (``rankswap serve``) standing in for the containers of ranker pods.

Each "pod" listens on its own loopback address 127.0.0.N, which a test writes into the Pod
object's ``status.podIP``: the operator then reaches it exactly as it would reach a pod IP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.services import stop_process

PUBLIC_PORT = 18080
ADMIN_PORT = 18081


@dataclass
class RankerProcess:
    name: str
    ip: str
    work: Path
    database_url: str
    allowed_roots: list[str]
    token: str
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def public_url(self) -> str:
        return f"http://{self.ip}:{PUBLIC_PORT}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.ip}:{ADMIN_PORT}"

    @property
    def log(self) -> Path:
        return self.work / f"{self.name}.log"

    def start(self, *, timeout: float = 60) -> RankerProcess:
        self.work.mkdir(parents=True, exist_ok=True)
        token_file = self.work / "admin-token"
        token_file.write_text(self.token)
        env = {
            **os.environ,
            "RANKSWAP_PUBLIC_HOST": self.ip,
            "RANKSWAP_PUBLIC_PORT": str(PUBLIC_PORT),
            "RANKSWAP_ADMIN_HOST": self.ip,
            "RANKSWAP_ADMIN_PORT": str(ADMIN_PORT),
            "RANKSWAP_WORKERS": str(self.workers),
            "RANKSWAP_DATABASE_URL": self.database_url,
            "RANKSWAP_ALLOWED_ROOTS": ",".join(self.allowed_roots),
            "RANKSWAP_RUN_DIR": str(self.work / "run"),
            "RANKSWAP_CACHE_DIR": str(self.work / "cache"),
            "RANKSWAP_ADMIN_TOKEN_FILE": str(token_file),
            **self.env,
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rankswap.cli", "serve"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"ranker {self.name} exited with {self.proc.returncode}; see {self.log}"
                )
            try:
                if httpx.get(f"{self.public_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(
            f"ranker {self.name} did not answer /healthz within {timeout:.0f}s; see {self.log}"
        )

    def admin_state(self) -> dict[str, Any]:
        response = httpx.get(
            f"{self.admin_url}/admin/v1/state",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=3,
        )
        response.raise_for_status()
        doc: dict[str, Any] = response.json()
        return doc

    def kill(self) -> None:
        """Like a container being OOM-killed: SIGKILL to the whole process group."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        elif self.proc is not None:
            stop_process(self.proc)
