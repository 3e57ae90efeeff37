"""The one way the harnesses, the tests and the benchmarks start rankswap processes.

* :class:`RankerProcess` - ``rankswap serve`` (a supervisor and its workers, in a process group of
  their own): a ranker pod's container. Ports 0 let the kernel choose (read back from
  ``<run_dir>/ports.json``); the local pods of :mod:`rankswap_dev.localkube.pods` use fixed ports
  on their own loopback address instead.
* :class:`OperatorProcess` - ``rankswap [global options] operator ...`` with a kubeconfig of its
  own (a ServiceAccount's, never the admin's).

Both write stdout and stderr to one log file (appended, so a restart keeps the earlier run) and
put that log's tail in every error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from rankswap_dev.wait import wait_until

CLI = [sys.executable, "-m", "rankswap.cli"]


def log_tail(path: Path, chars: int = 3000) -> str:
    """The end of a process log, for error messages ("" if there is none yet)."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""


@dataclass
class RankerProcess:
    """One ``rankswap serve`` process group on ``host``; :meth:`start` returns once it is healthy.

    ``settings`` are further ``RANKSWAP_*`` variables (they win over the ones derived from the
    fields); the rest of the environment is inherited, except ``PROMETHEUS_MULTIPROC_DIR``
    (the supervisor creates its own).
    """

    work: Path
    token: str
    name: str = "ranker"
    host: str = "127.0.0.1"
    public_port: int = 0
    admin_port: int = 0
    workers: int = 1
    settings: dict[str, str] = field(default_factory=dict)
    config_maps: dict[str, Mapping[str, str] | None] = field(default_factory=dict)
    """ConfigMap volumes by volume name: their data, projected into :meth:`mount` at
    :meth:`start` as the kubelet does (None: the ConfigMap does not exist, and the volume is
    ``optional: true``: an empty folder)."""
    proc: subprocess.Popen[bytes] | None = None
    public_url: str = ""
    admin_url: str = ""

    @property
    def log(self) -> Path:
        return self.work / f"{self.name}.log"

    @property
    def run_dir(self) -> Path:
        return self.work / "run"

    def mount(self, volume: str) -> Path:
        """Where the ConfigMap volume ``volume`` is mounted."""
        return self.work / "mounts" / volume

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def environment(self) -> dict[str, str]:
        token_file = self.work / "admin-token"
        env = {
            **os.environ,
            "RANKSWAP_PUBLIC_HOST": self.host,
            "RANKSWAP_PUBLIC_PORT": str(self.public_port),
            "RANKSWAP_ADMIN_HOST": self.host,
            "RANKSWAP_ADMIN_PORT": str(self.admin_port),
            "RANKSWAP_WORKERS": str(self.workers),
            # A short drain on stop (default 2 s): no Service routes to these processes, and
            # the tests and the demo stop hundreds of them (the drain's own tests set theirs).
            "RANKSWAP_DRAIN_S": "0.5",
            "RANKSWAP_RUN_DIR": str(self.run_dir),
            "RANKSWAP_ADMIN_TOKEN_FILE": str(token_file),
            **self.settings,
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return env

    def start(self, *, timeout: float = 60) -> Self:
        """Start the process; wait for its ports (``ports.json``) and then ``/healthz``."""
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "admin-token").write_text(self.token + "\n")
        (self.run_dir / "ports.json").unlink(missing_ok=True)
        for volume, data in self.config_maps.items():
            project_config_map(data or {}, self.mount(volume))
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*CLI, "serve"],
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ports = wait_until(
            self._ports, timeout, what=f"ranker {self.name} ports.json", detail=self._tail
        )
        self.public_url = f"http://{self.host}:{ports['public']}"
        self.admin_url = f"http://{self.host}:{ports['admin']}"
        wait_until(
            self._healthy,
            timeout,
            what=f"ranker {self.name} answering {self.public_url}/healthz",
            ignore=(httpx.HTTPError,),
            detail=self._tail,
        )
        return self

    def _tail(self) -> str:
        return f"log {self.log}:\n{log_tail(self.log)}"

    def _check_running(self) -> subprocess.Popen[bytes]:
        assert self.proc is not None, "start() first"
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"ranker {self.name} exited with {self.proc.returncode}; {self._tail()}"
            )
        return self.proc

    def _ports(self) -> dict[str, int] | None:
        proc = self._check_running()
        with contextlib.suppress(FileNotFoundError, ValueError):
            doc = json.loads((self.run_dir / "ports.json").read_text())
            if doc.get("pid") == proc.pid:
                return {k: int(v) for k, v in doc.items()}
        return None

    def _healthy(self) -> bool:
        self._check_running()
        return httpx.get(f"{self.public_url}/healthz", timeout=2).status_code == 200

    # admin calls ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """``GET /admin/v1/state`` (raises on a non-2xx answer)."""
        response = httpx.get(f"{self.admin_url}/admin/v1/state", headers=self.auth, timeout=5)
        response.raise_for_status()
        doc: dict[str, Any] = response.json()
        return doc

    def push(self, model_uri: str, features_uri: str, **extra: Any) -> httpx.Response:
        """``PUT /admin/v1/bundle``; the answer as it is."""
        return httpx.put(
            f"{self.admin_url}/admin/v1/bundle",
            json={"model_uri": model_uri, "features_uri": features_uri, **extra},
            headers=self.auth,
            timeout=5,
        )

    # life ----------------------------------------------------------------------------------

    def kill(self) -> None:
        """Like a container being OOM-killed: SIGKILL to the whole process group."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to the supervisor (what a kubelet sends); SIGKILL to the group after
        ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def project_config_map(data: Mapping[str, str], directory: Path) -> None:
    """Write a ConfigMap's ``data`` into ``directory`` the way the kubelet projects a volume:
    the files in a timestamped folder ``..<time>``, a symlink ``..data`` to it (swapped
    atomically on an update), and one symlink per key, ``<key> -> ..data/<key>``."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = (
        directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{os.getpid()}.{time.monotonic_ns()}"
    )
    stamp.mkdir()
    for key, value in data.items():
        (stamp / key).write_text(value, encoding="utf-8")
        (stamp / key).chmod(0o444)
    link = directory / "..data_tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(stamp.name)
    os.replace(link, directory / "..data")
    for key in data:
        if not (directory / key).is_symlink():
            (directory / key).symlink_to(f"..data/{key}")
    for old in directory.glob("..[0-9]*"):
        if old != stamp:
            shutil.rmtree(old)


@dataclass
class OperatorProcess:
    """``rankswap ARGS`` (the operator command and its options) as ``kubeconfig``'s identity.

    ``settings`` are further variables (``RANKSWAP_OPERATOR_*``); the rest of the environment is
    inherited.
    """

    args: list[str]
    kubeconfig: Path
    log: Path
    settings: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.settings}
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*CLI, *self.args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as when its pod is deleted without grace."""
        if self.proc is not None and self.running():
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM; SIGKILL after ``timeout`` seconds."""
        if self.proc is None or not self.running():
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)


def operator_args(namespace: str, liveness: str, *, log_level: str | None = None) -> list[str]:
    """``[--log-level L] operator -n NAMESPACE --liveness URL``: the local operator's command."""
    level = ["--log-level", log_level] if log_level else []
    return [*level, "operator", "-n", namespace, "--liveness", liveness]
