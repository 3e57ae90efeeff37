"""Running ranker pods and load generators for the benchmarks, and reading their memory."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

TOKEN = "bench-token"


@dataclass
class Pod:
    proc: subprocess.Popen[bytes]
    public: str
    admin: str
    run_dir: Path
    cache_dir: Path
    # One client for every admin call: a new httpx client per call builds an SSL context,
    # tens of milliseconds of CPU taken from the pod being measured.
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def state(self) -> dict[str, Any]:
        r = self.client.get(f"{self.admin}/admin/v1/state", headers=self.auth)
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc

    def push(self, model_uri: str, features_uri: str) -> int:
        r = self.client.put(
            f"{self.admin}/admin/v1/bundle",
            json={"model_uri": model_uri, "features_uri": features_uri},
            headers=self.auth,
        )
        r.raise_for_status()
        return int(r.json()["request_id"])

    def worker_pids(self) -> list[int]:
        return [int(w["pid"]) for w in self.state()["workers"] if w.get("alive")]


@contextlib.contextmanager
def ranker_pod(
    work: Path,
    *,
    workers: int,
    database_url: str,
    root: Path,
    model_uri: str,
    features_uri: str,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Pod]:
    work.mkdir(parents=True, exist_ok=True)
    token = work / "token"
    token.write_text(TOKEN)
    run_dir = work / "run"
    cache_dir = work / "cache"
    env = {
        **os.environ,
        "RANKSWAP_PUBLIC_HOST": "127.0.0.1",
        "RANKSWAP_PUBLIC_PORT": "0",
        "RANKSWAP_ADMIN_HOST": "127.0.0.1",
        "RANKSWAP_ADMIN_PORT": "0",
        "RANKSWAP_WORKERS": str(workers),
        "RANKSWAP_DATABASE_URL": database_url,
        "RANKSWAP_ALLOWED_ROOTS": root.as_uri(),
        "RANKSWAP_MODEL_URI": model_uri,
        "RANKSWAP_FEATURES_URI": features_uri,
        "RANKSWAP_RUN_DIR": str(run_dir),
        "RANKSWAP_CACHE_DIR": str(cache_dir),
        "RANKSWAP_ADMIN_TOKEN_FILE": str(token),
        "RANKSWAP_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    (run_dir / "ports.json").unlink(missing_ok=True)
    log = (work / "ranker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rankswap.cli", "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ports = _wait_ports(run_dir / "ports.json", proc, 90)
        pod = Pod(
            proc,
            f"http://127.0.0.1:{ports['public']}",
            f"http://127.0.0.1:{ports['admin']}",
            run_dir,
            cache_dir,
        )
        try:
            wait_until(lambda: _converged(pod), 180, "pod ready")
            yield pod
        finally:
            pod.client.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()


def _converged(pod: Pod) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return bool(pod.state()["converged"])
    return False


def _wait_ports(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ranker exited with {proc.returncode}")
        with contextlib.suppress(FileNotFoundError, ValueError):
            doc = json.loads(path.read_text())
            if doc.get("pid") == proc.pid:
                return {k: int(v) for k, v in doc.items()}
        time.sleep(0.1)
    raise TimeoutError("ranker did not bind its ports")


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not reached in {timeout}s")


def loadgen(
    url: str, body: dict[str, Any], *, duration: float, concurrency: int, rate: float = 0.0
) -> subprocess.Popen[bytes]:
    """Start the load generator process (read its result with :func:`load_result`)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rankswap_dev.bench_ranker.loadgen",
            "--url",
            url,
            "--body",
            json.dumps(body),
            "--duration",
            str(duration),
            "--concurrency",
            str(concurrency),
            "--rate",
            str(rate),
        ],
        stdout=subprocess.PIPE,
    )


def load_result(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=600)
    doc: dict[str, Any] = json.loads(out)
    return doc


def summarise(requests: list[list[float]], elapsed: float | None = None) -> dict[str, float]:
    if not requests:
        return {"requests": 0}
    arr = np.asarray(requests, dtype=np.float64)
    lat = arr[:, 1] * 1000
    ok = arr[:, 2] == 200
    doc = {
        "requests": float(len(arr)),
        "errors": float(np.count_nonzero(~ok)),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
    }
    if elapsed:
        doc["rps"] = float(len(arr) / elapsed)
    return doc


def memory(pid: int, feature_root: Path) -> dict[str, float]:
    """RSS / PSS / USS of a process, and RSS / PSS of its mappings of feature files (MiB)."""
    info = psutil.Process(pid).memory_full_info()
    feat_rss = feat_pss = 0
    current: str | None = None
    prefix = str(feature_root)
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            first = line.split(maxsplit=1)[0]
            if "-" in first and not first.endswith(":"):
                parts = line.split()
                current = parts[5] if len(parts) >= 6 else None
            elif current is not None and current.startswith(prefix):
                if first == "Rss:":
                    feat_rss += int(line.split()[1])
                elif first == "Pss:":
                    feat_pss += int(line.split()[1])
    mib = 1024 * 1024
    return {
        "rss_mib": info.rss / mib,
        "pss_mib": getattr(info, "pss", 0) / mib,
        "uss_mib": info.uss / mib,
        "features_rss_mib": feat_rss / 1024,
        "features_pss_mib": feat_pss / 1024,
    }
