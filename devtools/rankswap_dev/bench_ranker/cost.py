"""The ``cost`` section: what one request costs a worker, over HTTP and in process, side by side.

On the real world of :mod:`rankswap_dev.bench_ranker.real` (its ~100 and ~1,000 tenants):

* in process: ``RankRequest`` parsing + ``ranking.rank()``, CPU time per call (``process_time``
  over the calls ÷ calls) next to the wall-clock median;
* ``rankswap serve`` with one worker, and the peer (:mod:`rankswap_dev.bench_ranker.peer`: a
  minimal FastAPI app calling the same ``rank()``), each loaded in turn by the same closed-loop
  load generator: **worker CPU time per request** = user+system time of the serving process
  during the run ÷ requests answered. It does not depend on the load generator sharing the
  cores, which wall-clock throughput does. HTTP overhead = that − the in-process CPU per call.
* load generators: ``wrk`` (Debian package; installed with apt-get when missing and possible)
  and the project's own (:mod:`rankswap_dev.bench_ranker.loadgen`), both closed loop with the
  same connections; then open loop (the project's) at half the capacity the CPU measure gives,
  for p50/p99.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from rankswap_dev.bench_ranker import harness
from rankswap_dev.wait import wait_until

Runner = Callable[[str, dict[str, Any], float, float], dict[str, Any]]


def ensure_wrk() -> str | None:
    """The path of ``wrk``, installing the Debian package when it is missing (as root)."""
    found = shutil.which("wrk")
    if found or not shutil.which("apt-get") or os.geteuid() != 0:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("# installing wrk (apt-get) ...", file=sys.stderr, flush=True)
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode != 0:
            return None
    return shutil.which("wrk")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if m is None:
        raise ValueError(f"wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, float]:
    """Requests, errors, req/s and latency percentiles from ``wrk --latency`` output."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", out)
    if total is None:
        raise ValueError(f"unexpected wrk output:\n{out}")
    requests = int(total.group(1))
    elapsed_s = float(total.group(2)) * _UNITS[total.group(3)] / 1e3
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    doc = {"requests": float(requests), "errors": float(errors), "rps": requests / elapsed_s}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.MULTILINE)
        if m:
            doc[f"p{pct}_ms"] = _ms(m.group(1))
    return doc


def wrk_runner(wrk: str, connections: int) -> Runner:
    def run(url: str, body: dict[str, Any], duration: float, _rate: float) -> dict[str, Any]:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(
                'wrk.method = "POST"\n'
                f"wrk.body = {json.dumps(json.dumps(body))}\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
            )
        try:
            cmd = [wrk, "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s", f.name]
            out = subprocess.run(
                [*cmd, url], capture_output=True, text=True, check=True, timeout=duration + 60
            ).stdout
        finally:
            os.unlink(f.name)
        return parse_wrk(out)

    return run


def loadgen_runner(connections: int) -> Runner:
    def run(url: str, body: dict[str, Any], duration: float, rate: float) -> dict[str, Any]:
        res = harness.load_result(
            harness.loadgen(url, body, duration=duration, concurrency=connections, rate=rate)
        )
        return harness.summarise(res["requests"], res["elapsed_s"])

    return run


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def measured(
    pids: list[int], runner: Runner, url: str, body: dict[str, Any], duration: float, rate: float
) -> dict[str, Any]:
    """``runner``'s result plus the serving processes' CPU time per request answered."""
    before = cpu_s(pids)
    doc = runner(url, body, duration, rate)
    used = cpu_s(pids) - before
    doc["cpu_ms_per_request"] = used * 1000 / max(doc["requests"], 1.0)
    return doc


def asgi_cpu_ms(apps: dict[str, Any], raw: bytes, rounds: int, calls: int) -> dict[str, float]:
    """CPU per request of ASGI apps called in process (no socket, no HTTP parsing): what the
    framework and everything an app adds cost, without the transport. The apps take turns,
    ``calls`` requests each per round, so the neighbours' noise falls on all alike; the median
    over the rounds is reported."""
    scope = asgi_scope(raw)
    request = {"type": "http.request", "body": raw, "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"in-process ASGI call answered {message['status']}")

    async def run() -> dict[str, float]:
        per: dict[str, list[float]] = {name: [] for name in apps}
        for r in range(rounds + 1):
            for name, app in apps.items():
                t0 = time.process_time()
                for _ in range(calls):
                    await app(dict(scope), receive, send)
                if r:  # round 0 warms up
                    per[name].append((time.process_time() - t0) * 1000 / calls)
        return {name: statistics.median(v) for name, v in per.items()}

    import uvloop

    return uvloop.run(run())


def asgi_scope(raw: bytes) -> dict[str, Any]:
    """The ASGI scope of a JSON ``POST /v1/rank`` carrying ``raw``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/rank",
        "raw_path": b"/v1/rank",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


def asgi_in_process(
    world: Any, bodies: dict[str, dict[str, Any]], work: Path, rounds: int = 20, calls: int = 25
) -> dict[str, Any]:
    """Per tenant: the CPU per request of the ranker's public app (``create_app``, metrics in
    a registry of its own) and of the peer app, both driven in this process."""
    from prometheus_client import CollectorRegistry

    from rankswap_dev.bench_ranker.peer import peer_app
    from rankswap_ranker import bundle as bundles
    from rankswap_ranker.app import create_app
    from rankswap_ranker.candidates import LazyProductDB
    from rankswap_ranker.metrics import RankerMetrics
    from rankswap_ranker.ranking import RankQuery, rank
    from rankswap_ranker.registry import BundleRegistry
    from rankswap_ranker.schemas import RankRequest
    from rankswap_ranker.settings import RankerSettings

    ref = bundles.resolve(world.model_uri, world.features_uri, work / "inproc-cache")
    bundle = bundles.load(ref, prefault=True)
    registry: BundleRegistry[bundles.Bundle] = BundleRegistry()
    registry.activate(bundle)
    source = LazyProductDB(world.db_url)

    async def direct(scope: Any, receive: Any, send: Any) -> None:
        """No app: parse + ``rank()`` inline, as the in-process breakdown calls them."""
        body = RankRequest.model_validate_json((await receive())["body"])
        ctx = body.context
        rank(
            bundle,
            source,
            RankQuery(
                tenant_id=body.tenant_id,
                employee_id=ctx.employee_id,
                vendor_id=ctx.vendor_id,
                description=ctx.description,
                amount=ctx.amount,
                expense_date=ctx.date,
                top_k=body.top_k or 5,
            ),
        )

    apps: dict[str, Any] = {
        "direct": direct,
        "rankswap": create_app(
            RankerSettings(run_dir=work / "asgi-run"),
            registry,
            source,
            metrics=RankerMetrics(CollectorRegistry()),
        ),
        "peer": peer_app(bundle, source),
    }
    out: dict[str, Any] = {}
    try:
        for tenant, body in bodies.items():
            raw = json.dumps(body).encode()
            out[tenant] = asgi_cpu_ms(apps, raw, rounds, calls)
    finally:
        source.close()
    return out


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def peer_process(
    work: Path, model_uri: str, features_uri: str, db_url: str, probe: dict[str, Any]
) -> Iterator[tuple[str, int]]:
    """The peer app in a process of its own; yields (its URL, its pid) once it answers."""
    host = "127.0.0.1"
    port = _free_port(host)
    work.mkdir(parents=True, exist_ok=True)
    log = (work / "peer.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rankswap_dev.bench_ranker.peer",
            *("--model-uri", model_uri, "--features-uri", features_uri, "--db", db_url),
            *("--cache", str(work / "cache"), "--host", host, "--port", str(port)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{host}:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the peer app exited ({proc.returncode}); see {work / 'peer.log'}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.post(f"{url}/v1/rank", json=probe, timeout=5).status_code == 200
        return False

    try:
        wait_until(answers, 120, 0.2, what="peer app answering")
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def load_target(
    url: str,
    pids: list[int],
    bodies: dict[str, dict[str, Any]],
    runners: dict[str, Runner],
    duration: float,
) -> dict[str, Any]:
    """Per tenant: each closed-loop runner (after a 1 s warm-up), then open loop at half the
    capacity implied by the CPU measure of the first runner."""
    out: dict[str, Any] = {}
    for tenant, body in bodies.items():
        runs: dict[str, Any] = {}
        for name, runner in runners.items():
            runner(f"{url}/v1/rank", body, 1.0, 0.0)  # warm-up
            runs[name] = measured(pids, runner, f"{url}/v1/rank", body, duration, 0.0)
        first = next(iter(runs.values()))
        rate = 0.5 * 1000 / first["cpu_ms_per_request"]
        runs["open"] = measured(pids, loadgen_runner(32), f"{url}/v1/rank", body, duration, rate)
        runs["open"]["rate"] = rate
        out[tenant] = runs
    return out


def section(
    world: Any,
    bodies: dict[str, list[dict[str, Any]]],
    inproc: dict[str, Any],
    work: Path,
    duration: float,
    connections: int,
) -> dict[str, Any]:
    """rankswap (1 worker) and the peer, loaded in turn; ``inproc`` is the in-process
    breakdown of the same tenants in the same run."""
    first = {t: b[0] for t, b in bodies.items()}
    doc: dict[str, Any] = {"asgi": asgi_in_process(world, first, work)}
    wrk = ensure_wrk()
    runners: dict[str, Runner] = {}
    if wrk is not None:
        runners["wrk"] = wrk_runner(wrk, connections)
    runners["loadgen"] = loadgen_runner(connections)
    doc.update(wrk=wrk, connections=connections, duration_s=duration)
    root = Path(world.store.removeprefix("file://"))
    with harness.ranker_pod(
        work / "cost-pod",
        workers=1,
        database_url=world.db_url,
        root=root,
        model_uri=world.model_uri,
        features_uri=world.features_uri,
    ) as pod:
        doc["rankswap"] = load_target(pod.public, pod.worker_pids(), first, runners, duration)
    probe = next(iter(first.values()))
    with peer_process(
        work / "cost-peer", world.model_uri, world.features_uri, world.db_url, probe
    ) as (url, pid):
        doc["peer"] = load_target(url, [pid], first, runners, duration)
    doc["inproc"] = {
        t: {k: inproc[t][k] for k in ("candidates", "total_ms", "cpu_ms")} for t in first
    }
    return doc


def report(x: dict[str, Any], label: dict[str, str]) -> list[str]:
    gens = [g for g in ("wrk", "loadgen") if g in next(iter(x["rankswap"].values()))]
    lines = [
        "### Serving cost per request: one worker vs in process vs the peer FastAPI app",
        "",
        f"Closed loop, {x['connections']} connections, {x['duration_s']:g} s per run, load "
        f"generators: {', '.join(gens)} (wrk: {x['wrk'] or 'not available'}). *CPU/req* = "
        "user+system time of the serving process during the run ÷ requests answered; "
        "*overhead* = that − the in-process CPU of parse + `rank()` per call (same run); "
        "*req/s per core* = 1000 ÷ CPU/req.",
        "",
        "| tenant | candidates | in-process p50 ms | in-process CPU ms | app | generator | req/s "
        "| CPU/req ms | overhead ms | req/s per core | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t, ip in x["inproc"].items():
        for app in ("rankswap", "peer"):
            for g in gens:
                d = x[app][t][g]
                cpu = d["cpu_ms_per_request"]
                lines.append(
                    f"| {t} ({label.get(t, '')}) | {ip['candidates']:,} | {ip['total_ms']:.3f} | "
                    f"{ip['cpu_ms']:.3f} | {app} | {g} | {d['rps']:.0f} | {cpu:.3f} | "
                    f"{cpu - ip['cpu_ms']:.3f} | {1000 / cpu:.0f} | {d.get('p50_ms', 0):.2f} | "
                    f"{d.get('p99_ms', 0):.2f} | {d['errors']:.0f} |"
                )
    lines += [
        "",
        "| tenant | app | open loop req/s offered | served | p50 ms | p99 ms | p99 / p50 | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in x["inproc"]:
        for app in ("rankswap", "peer"):
            d = x[app][t]["open"]
            lines.append(
                f"| {t} | {app} | {d['rate']:.0f} | {d['rps']:.0f} | {d['p50_ms']:.2f} | "
                f"{d['p99_ms']:.2f} | {d['p99_ms'] / d['p50_ms']:.2f} | {d['errors']:.0f} |"
            )
    lines += [
        "",
        "In process, no socket (each ASGI app called directly with the tenant's first body, "
        "taking turns, 20 rounds of 25 calls each, medians; same run): CPU per request, and its "
        "overhead over parse + `rank()` called inline on the same body:",
        "",
        "| tenant | in-process parse + rank() | rankswap app | rankswap overhead | peer app "
        "| peer overhead |",
        "|---|---|---|---|---|---|",
    ]
    for t, a in x["asgi"].items():
        base = a["direct"]
        lines.append(
            f"| {t} | {base:.3f} | {a['rankswap']:.3f} | {a['rankswap'] - base:.3f} | "
            f"{a['peer']:.3f} | {a['peer'] - base:.3f} |"
        )
    lines.append("")
    for t in x["inproc"]:
        for g in gens:
            a, b = x["rankswap"][t][g], x["peer"][t][g]
            lines.append(
                f"{t}, {g}: rankswap / peer throughput {a['rps'] / b['rps']:.2f}, CPU per "
                f"request {a['cpu_ms_per_request'] / b['cpu_ms_per_request']:.2f}."
            )
    lines.append("")
    return lines
