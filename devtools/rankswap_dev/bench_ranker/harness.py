"""Running ranker pods and load generators for the benchmarks, and reading their memory."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from rankswap_dev.launch import RankerProcess
from rankswap_dev.wait import wait_until

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
    """A ranker process (the shared launcher, ports chosen by the kernel), converged on the
    bundle given."""
    ranker = RankerProcess(
        work,
        TOKEN,
        workers=workers,
        settings={
            "RANKSWAP_DATABASE_URL": database_url,
            "RANKSWAP_ALLOWED_ROOTS": root.as_uri(),
            "RANKSWAP_MODEL_URI": model_uri,
            "RANKSWAP_FEATURES_URI": features_uri,
            "RANKSWAP_CACHE_DIR": str(work / "cache"),
            "RANKSWAP_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        },
    )
    try:
        ranker.start(timeout=90)
        assert ranker.proc is not None
        pod = Pod(ranker.proc, ranker.public_url, ranker.admin_url, ranker.run_dir, work / "cache")
        try:
            wait_until(lambda: _converged(pod), 180, 0.2, what="pod ready")
            yield pod
        finally:
            pod.client.close()
    finally:
        ranker.stop(30)


def _converged(pod: Pod) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return bool(pod.state()["converged"])
    return False


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
