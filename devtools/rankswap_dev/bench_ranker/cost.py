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
  for p50/p99;
* the headline open loop: fixed offered rates (``--open-rates``), the same for every target,
  with ``vegeta`` (Go, built from the module proxy by ``scripts/vegeta.sh`` when ``go`` is on
  PATH) and the project's load generator; rates, targets and generators take turns so the
  neighbours' noise falls on all alike. Per run: p50, p99, max, errors, and the worker's CPU
  (and, for rankswap, ranking CPU) per request over that run. A worker's CPU per request
  depends on the offered rate (caches go cold between spaced requests), so these runs, not
  "half of capacity", are what compares main with head and rankswap with the peer.
"""

from __future__ import annotations

import contextlib
import functools
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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil

from rankswap_dev.bench_ranker import harness
from rankswap_dev.wait import wait_until

Runner = Callable[[str, dict[str, Any], float, float], dict[str, Any]]

REPO = Path(__file__).resolve().parents[3]
OPEN_RATES = (150.0, 300.0, 450.0)
"""Default offered rates of the fixed-rate open loop (req/s): below, near and at the open-loop
capacity of one worker at ~800 candidates on the 2-core machine."""
OPEN_DURATION_S = 15.0
OPEN_CONNECTIONS = 32
"""Connections of the project's load generator in open loop (vegeta opens what it needs)."""


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


def ensure_vegeta() -> str | None:
    """The path of ``vegeta``, built by ``scripts/vegeta.sh`` (``go install`` of a pinned
    version into the rankswap cache, only when missing) when ``go`` is on PATH; else None (the
    fixed-rate open loop then runs with the project's load generator only)."""
    if shutil.which("go") is None:
        return None
    print("# vegeta: scripts/vegeta.sh ...", file=sys.stderr, flush=True)
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "vegeta.sh")],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        timeout=900,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not os.access(lines[-1], os.X_OK):
        print("# vegeta: not available (see the messages above)", file=sys.stderr, flush=True)
        return None
    return lines[-1]


def parse_vegeta(text: str) -> dict[str, float]:
    """Requests, errors (answers other than 200, failures), req/s served and latency p50 / p99 /
    max (ms) from ``vegeta report -type json``."""
    try:
        doc = json.loads(text)
        lat = doc["latencies"]
        requests = int(doc["requests"])
        codes = {str(k): int(v) for k, v in doc["status_codes"].items()}
        # the time from the first request sent to the last answer received
        elapsed_s = (int(doc["duration"]) + int(doc["wait"])) / 1e9
        out = {
            "requests": float(requests),
            "errors": float(requests - codes.get("200", 0)),
            "rps": requests / elapsed_s if elapsed_s > 0 else 0.0,
            "p50_ms": int(lat["50th"]) / 1e6,
            "p99_ms": int(lat["99th"]) / 1e6,
            "max_ms": int(lat["max"]) / 1e6,
        }
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"unexpected vegeta report ({e!r}):\n{text[:2000]}") from None
    if requests < 0 or not 0 <= out["errors"] <= requests:
        raise ValueError(f"inconsistent vegeta report:\n{text[:2000]}")
    return out


def vegeta_runner(vegeta: str) -> Runner:
    """Open loop at ``rate`` req/s for ``duration`` s (vegeta cannot run a closed loop here)."""

    def run(url: str, body: dict[str, Any], duration: float, rate: float) -> dict[str, Any]:
        if rate <= 0:
            raise ValueError("vegeta runs open loop only: give a rate > 0")
        with tempfile.TemporaryDirectory(prefix="rankswap-vegeta-") as tmp:
            work = Path(tmp)
            (work / "body.json").write_text(json.dumps(body))
            (work / "targets").write_text(
                f"POST {url}\nContent-Type: application/json\n@{work / 'body.json'}\n"
            )
            attack = [
                vegeta,
                "attack",
                f"-rate={rate:g}/s",
                f"-duration={duration:g}s",
                "-timeout=10s",
                f"-targets={work / 'targets'}",
                f"-output={work / 'results.bin'}",
            ]
            subprocess.run(attack, capture_output=True, check=True, timeout=duration + 60)
            out = subprocess.run(
                [vegeta, "report", "-type=json", str(work / "results.bin")],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout
        return parse_vegeta(out)

    return run


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


_RANK_CPU = re.compile(r"^rankswap_ranker_rank_cpu_seconds_total (\S+)$", re.MULTILINE)


def rank_cpu_s(base_url: str) -> float:
    """The pod's ``rankswap_ranker_rank_cpu_seconds_total``: CPU its workers spent ranking."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    found = _RANK_CPU.search(text)
    if found is None:
        raise RuntimeError(f"{base_url}/metrics has no rankswap_ranker_rank_cpu_seconds_total")
    return float(found.group(1))


def steal_s() -> float:
    """CPU time the hypervisor gave other guests while this machine's CPUs had work
    (``steal`` in ``/proc/stat``, all CPUs; 0.0 where there is no such file)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return 0.0
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def measured(
    pids: list[int],
    runner: Runner,
    url: str,
    body: dict[str, Any],
    duration: float,
    rate: float,
    rank_cpu: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """``runner``'s result plus the serving processes' CPU time per request answered, and with
    ``rank_cpu`` (the pod's ranking CPU counter) the part of it spent ranking, measured by the
    worker itself during the same requests."""
    ranked = rank_cpu() if rank_cpu is not None else 0.0
    before, stolen, t0 = cpu_s(pids), steal_s(), time.monotonic()
    doc = runner(url, body, duration, rate)
    used = cpu_s(pids) - before
    # a tail on a shared VM often is the hypervisor's: the share of the CPUs' time it took
    doc["steal_pct"] = (
        100 * (steal_s() - stolen) / max((time.monotonic() - t0) * (os.cpu_count() or 1), 1e-9)
    )
    requests = max(doc["requests"], 1.0)
    doc["cpu_ms_per_request"] = used * 1000 / requests
    if rank_cpu is not None:  # the scrape itself is one request, not counted in ``requests``
        doc["rank_cpu_ms_per_request"] = (rank_cpu() - ranked) * 1000 / requests
    return doc


def parse_cpu_ms(body: dict[str, Any], calls: int = 2000) -> float:
    """CPU per call of parsing ``body`` as the fast path does (``json.loads`` + validation)."""
    from rankswap_ranker.routes import parse_rank_request

    raw = json.dumps(body).encode()
    best = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(calls // 5):
            parse_rank_request(raw)
        best.append((time.process_time() - t0) * 1000 / (calls // 5))
    return statistics.median(best)


def asgi_cpu_ms(
    apps: dict[str, Any],
    raw: bytes,
    rounds: int,
    calls: int,
    after_round: dict[str, Callable[[], Any]] | None = None,
) -> dict[str, float]:
    """CPU per request of ASGI apps called in process (no socket, no HTTP parsing): what the
    framework and everything an app adds cost, without the transport. The apps take turns,
    ``calls`` requests each per round, so the neighbours' noise falls on all alike; the median
    over the rounds is reported (and the wall-clock median as ``"<name> wall"``).
    ``after_round[name]`` runs after each of that app's rounds, inside its time (e.g. a tracer
    provider's flush, which is part of what tracing costs)."""
    scope = asgi_scope(raw)
    request = {"type": "http.request", "body": raw, "more_body": False}
    after = after_round or {}

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"in-process ASGI call answered {message['status']}")

    async def run() -> dict[str, float]:
        cpu: dict[str, list[float]] = {name: [] for name in apps}
        wall: dict[str, list[float]] = {name: [] for name in apps}
        for r in range(rounds + 1):
            for name, app in apps.items():
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(calls):
                    await app(dict(scope), receive, send)
                if name in after:
                    after[name]()
                if r:  # round 0 warms up
                    cpu[name].append((time.process_time() - c0) * 1000 / calls)
                    wall[name].append((time.perf_counter() - w0) * 1000 / calls)
        doc = {name: statistics.median(v) for name, v in cpu.items()}
        doc.update({f"{name} wall": statistics.median(v) for name, v in wall.items()})
        return doc

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
    from rankswap_ranker.ranking import rank
    from rankswap_ranker.registry import BundleRegistry
    from rankswap_ranker.routes import rank_query
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
        rank(bundle, source, rank_query(body, body.top_k or 5))

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
    rank_cpu: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Per tenant: each closed-loop runner (after a 1 s warm-up), then open loop at half the
    capacity implied by the CPU measure of the first runner."""
    out: dict[str, Any] = {}
    for tenant, body in bodies.items():
        runs: dict[str, Any] = {}
        for name, runner in runners.items():
            runner(f"{url}/v1/rank", body, 1.0, 0.0)  # warm-up
            runs[name] = measured(pids, runner, f"{url}/v1/rank", body, duration, 0.0, rank_cpu)
        first = next(iter(runs.values()))
        rate = 0.5 * 1000 / first["cpu_ms_per_request"]
        runs["open"] = measured(pids, loadgen_runner(32), f"{url}/v1/rank", body, duration, rate)
        runs["open"]["rate"] = rate
        out[tenant] = runs
    return out


class Target:
    """A serving process under load: its URL, the pids whose CPU time is counted, and (rankswap
    only) how to read its ranking CPU counter."""

    def __init__(
        self, url: str, pids: list[int], rank_cpu: Callable[[], float] | None = None
    ) -> None:
        self.url, self.pids, self.rank_cpu = url, pids, rank_cpu


def open_schedule(
    rates: Sequence[float], targets: Sequence[str], generators: Sequence[str]
) -> list[tuple[float, str, str]]:
    """Every (rate, target, generator) once: the rates in the order given, and within a rate the
    targets and generators in an order that reverses from one rate to the next (A B B A ...), so
    a neighbour's burst or a drift of the machine falls on all alike."""
    runs: list[tuple[float, str, str]] = []
    for i, rate in enumerate(rates):
        ts = list(targets) if i % 2 == 0 else list(targets)[::-1]
        gs = list(generators) if i % 2 == 0 else list(generators)[::-1]
        runs += [(rate, t, g) for t in ts for g in gs]
    return runs


def fixed_rates(
    targets: dict[str, Target],
    bodies: dict[str, dict[str, Any]],
    generators: dict[str, Runner],
    rates: Sequence[float],
    duration: float,
) -> dict[str, list[dict[str, Any]]]:
    """Per tenant: one open-loop run per (rate, target, generator), in :func:`open_schedule`'s
    order, each measured like the closed-loop runs (CPU per request over that run)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for tenant, body in bodies.items():
        runs = []
        for rate, name, gen in open_schedule(rates, list(targets), list(generators)):
            t = targets[name]
            print(f"# open loop {tenant} {rate:g} req/s {name} {gen}", file=sys.stderr, flush=True)
            doc = measured(
                t.pids, generators[gen], f"{t.url}/v1/rank", body, duration, rate, t.rank_cpu
            )
            runs.append({"rate": rate, "target": name, "generator": gen, **doc})
        out[tenant] = runs
    return out


def section(
    world: Any,
    bodies: dict[str, list[dict[str, Any]]],
    inproc: dict[str, Any],
    work: Path,
    duration: float,
    connections: int,
    open_rates: Sequence[float] = OPEN_RATES,
    open_duration: float = OPEN_DURATION_S,
) -> dict[str, Any]:
    """rankswap (1 worker) and the peer, both up for the whole section: closed loop on each in
    turn, then open loop at the fixed ``open_rates`` taking turns; ``inproc`` is the in-process
    breakdown of the same tenants in the same run."""
    first = {t: b[0] for t, b in bodies.items()}
    doc: dict[str, Any] = {"asgi": asgi_in_process(world, first, work)}
    wrk = ensure_wrk()
    vegeta = ensure_vegeta()
    runners: dict[str, Runner] = {}
    if wrk is not None:
        runners["wrk"] = wrk_runner(wrk, connections)
    runners["loadgen"] = loadgen_runner(connections)
    open_gens: dict[str, Runner] = {}
    if vegeta is not None:
        open_gens["vegeta"] = vegeta_runner(vegeta)
    open_gens["loadgen"] = loadgen_runner(OPEN_CONNECTIONS)
    doc.update(
        wrk=wrk,
        vegeta=vegeta,
        connections=connections,
        duration_s=duration,
        open_rates=list(open_rates),
        open_duration_s=open_duration,
    )
    root = Path(world.store.removeprefix("file://"))
    probe = next(iter(first.values()))
    with (
        harness.ranker_pod(
            work / "cost-pod",
            workers=1,
            database_url=world.db_url,
            root=root,
            model_uri=world.model_uri,
            features_uri=world.features_uri,
        ) as pod,
        peer_process(
            work / "cost-peer", world.model_uri, world.features_uri, world.db_url, probe
        ) as (url, pid),
    ):
        targets = {
            "rankswap": Target(pod.public, pod.worker_pids(), lambda: rank_cpu_s(pod.public)),
            "peer": Target(url, [pid]),
        }
        for name, t in targets.items():
            doc[name] = load_target(t.url, t.pids, first, runners, duration, t.rank_cpu)
        if open_rates:
            doc["fixed"] = fixed_rates(targets, first, open_gens, open_rates, open_duration)
    doc["inproc"] = {
        t: {k: inproc[t][k] for k in ("candidates", "total_ms", "cpu_ms")} for t in first
    }
    doc["parse_ms"] = {t: parse_cpu_ms(b) for t, b in first.items()}
    return doc


def fixed_report(x: dict[str, Any], label: dict[str, str]) -> list[str]:
    """The fixed-rate open-loop table (empty when the section ran without ``--open-rates``)."""
    if not x.get("fixed"):
        return []
    gens = sorted({r["generator"] for runs in x["fixed"].values() for r in runs})
    lines = [
        "### Open loop at fixed offered rates: rankswap (1 worker) and the peer, same rates",
        "",
        f"{x['open_duration_s']:g} s per run, offered {', '.join(f'{r:g}' for r in x['open_rates'])}"
        f" req/s; generators: {', '.join(gens)} (vegeta: {x.get('vegeta') or 'not available'});"
        " rates, apps and generators took turns (the order reverses from one rate to the next)."
        " Latency counts from the due time with the project's generator, from the send with "
        "vegeta. *CPU/req* = the serving process's user+system time over the run ÷ requests "
        "answered; *rank CPU/req* = the worker's `rankswap_ranker_rank_cpu_seconds_total` over "
        "the run ÷ requests (rankswap only).",
        "",
        "| tenant | offered req/s | app | generator | served req/s | p50 ms | p99 ms | p99 / p50 "
        "| max ms | errors | CPU/req ms | rank CPU/req ms | steal % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tenant, runs in x["fixed"].items():
        name = f"{tenant} ({label[tenant]})" if label.get(tenant) else tenant
        for r in sorted(runs, key=lambda r: (r["rate"], r["target"] != "rankswap", r["generator"])):
            p50, p99 = r.get("p50_ms", 0.0), r.get("p99_ms", 0.0)
            ratio = f"{p99 / p50:.2f}" if p50 > 0 else "-"
            ranked = r.get("rank_cpu_ms_per_request")
            lines.append(
                f"| {name} | {r['rate']:g} | {r['target']} | {r['generator']} | "
                f"{r.get('rps', 0.0):.0f} | {p50:.2f} | {p99:.2f} | {ratio} | "
                f"{r.get('max_ms', 0.0):.1f} | {r['errors']:.0f} | "
                f"{r['cpu_ms_per_request']:.3f} | "
                f"{'-' if ranked is None else f'{ranked:.3f}'} | {r.get('steal_pct', 0.0):.1f} |"
            )
    lines.append("")
    return lines


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
        "Measured by the worker itself during the same runs (rankswap only): *rank CPU* = its "
        "`rankswap_ranker_rank_cpu_seconds_total` per request (ranking, from the bundle choice "
        "to the counters); *parse* = CPU of parsing the same body in process; *overhead in the "
        "worker* = CPU/req − rank CPU − parse: everything HTTP, the app and its metrics add, on "
        "the same requests at the same time (no comparison across processes or moments).",
        "",
        "| tenant | generator | CPU/req ms | rank CPU ms | parse ms | overhead in the worker ms |",
        "|---|---|---|---|---|---|",
    ]
    for t in x["inproc"]:
        for g in gens:
            d = x["rankswap"][t][g]
            if "rank_cpu_ms_per_request" not in d:
                continue
            cpu, ranked = d["cpu_ms_per_request"], d["rank_cpu_ms_per_request"]
            parse = x.get("parse_ms", {}).get(t, 0.0)
            lines.append(
                f"| {t} | {g} | {cpu:.3f} | {ranked:.3f} | {parse:.3f} | "
                f"{cpu - ranked - parse:.3f} |"
            )
    lines += [
        "",
        "| tenant | app | open loop req/s offered | served | p50 ms | p99 ms | p99 / p50 | errors "
        "| steal % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in x["inproc"]:
        for app in ("rankswap", "peer"):
            d = x[app][t]["open"]
            lines.append(
                f"| {t} | {app} | {d['rate']:.0f} | {d['rps']:.0f} | {d['p50_ms']:.2f} | "
                f"{d['p99_ms']:.2f} | {d['p99_ms'] / d['p50_ms']:.2f} | {d['errors']:.0f} | "
                f"{d.get('steal_pct', 0.0):.1f} |"
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
    return lines + fixed_report(x, label)


# Side by side: two source trees' workers under the same closed loop -------------------------


def ab_http(
    world: Any,
    body: dict[str, Any],
    sides: dict[str, Path | None],
    work: Path,
    *,
    rounds: int = 6,
    duration: float = 5.0,
    connections: int = 4,
    rate: float = 0.0,
) -> dict[str, Any]:
    """``rankswap serve`` (one worker) of each side's source tree (None: this one; else a
    tree whose ``core``/``ranker`` folders go first on ``PYTHONPATH``), all up at once, loaded in
    turn by the same generator, ``rounds`` times, the order reversing each round (A B, B A, …).
    Per run: worker CPU per request and the worker's own ranking CPU per request
    (``rankswap_ranker_rank_cpu_seconds_total``); per side the medians over rounds, and per
    other side the median of its per-round ratios against the first side."""
    root = Path(world.store.removeprefix("file://"))
    runner = loadgen_runner(connections)
    with contextlib.ExitStack() as stack:
        targets: dict[str, Target] = {}
        for name, tree in sides.items():
            env = {}
            if tree is not None:
                env["PYTHONPATH"] = os.pathsep.join(
                    str(tree / p) for p in ("core", "ranker", "devtools")
                )
            pod = stack.enter_context(
                harness.ranker_pod(
                    work / f"ab-{name}",
                    workers=1,
                    database_url=world.db_url,
                    root=root,
                    model_uri=world.model_uri,
                    features_uri=world.features_uri,
                    extra_env=env,
                )
            )
            targets[name] = Target(
                pod.public, pod.worker_pids(), functools.partial(rank_cpu_s, pod.public)
            )
        for t in targets.values():
            runner(f"{t.url}/v1/rank", body, 2.0, rate)  # warm-up
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        order = list(targets)
        for r in range(rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                t = targets[name]
                doc = measured(t.pids, runner, f"{t.url}/v1/rank", body, duration, rate, t.rank_cpu)
                doc["outside_ms_per_request"] = (
                    doc["cpu_ms_per_request"] - doc["rank_cpu_ms_per_request"]
                )
                runs[name].append(doc)
                print(
                    f"# round {r} {name}: cpu/req {doc['cpu_ms_per_request']:.3f} ms, "
                    f"outside rank {doc['outside_ms_per_request']:.3f} ms, "
                    f"{doc.get('rps', 0):.0f} req/s, errors {doc['errors']:.0f}, "
                    f"steal {doc['steal_pct']:.1f} %",
                    file=sys.stderr,
                    flush=True,
                )
    keys = ("cpu_ms_per_request", "rank_cpu_ms_per_request", "outside_ms_per_request", "rps")
    out: dict[str, Any] = {
        name: {k: statistics.median(d[k] for d in docs) for k in keys}
        | {"errors": sum(d["errors"] for d in docs)}
        for name, docs in runs.items()
    }
    first = order[0]
    for name in order[1:]:
        for k in ("cpu_ms_per_request", "outside_ms_per_request"):
            out[name][f"{k} / {first}"] = statistics.median(
                b[k] / a[k] for a, b in zip(runs[first], runs[name], strict=True)
            )
        out[name][f"outside delta vs {first} ms"] = statistics.median(
            b["outside_ms_per_request"] - a["outside_ms_per_request"]
            for a, b in zip(runs[first], runs[name], strict=True)
        )
    out["runs"] = runs
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m rankswap_dev.bench_ranker.cost --side base=/tmp/base --side head=. ...``"""
    import argparse

    from rankswap_dev.bench_ranker import real

    p = argparse.ArgumentParser(description=ab_http.__doc__)
    p.add_argument("--db", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--tenant", default="t006")
    p.add_argument("--side", action="append", required=True, help="NAME=TREE ('.': this tree)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--rate", type=float, default=0.0, help="req/s (0: closed loop)")
    args = p.parse_args(argv)
    world = real.build_world(args.workdir, args.db, args.store)
    body = real.rank_bodies(world.db_url, args.tenant, world.as_of, 1)[0]
    sides: dict[str, Path | None] = {}
    for spec in args.side:
        name, _, tree = spec.partition("=")
        sides[name] = None if tree in ("", ".") else Path(tree).resolve()
    doc = ab_http(
        world,
        body,
        sides,
        args.workdir,
        rounds=args.rounds,
        duration=args.duration,
        connections=args.connections,
        rate=args.rate,
    )
    json.dump(doc, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
