"""The ``tracing`` section: what tracing costs one request, off and on, side by side in process.

On the real world of :mod:`rankswap_dev.bench_ranker.real` (its ~100 and ~1,000 tenants), the
ranker's public app (``create_app``) is called in process with each tenant's first body, built
three ways and taking turns (so the neighbours' noise falls on all alike):

* ``off``: no tracing configured (what every pod runs unless ``OTEL_*`` says otherwise);
* ``on, not sampled``: the worker's provider (:func:`rankswap_ranker.spans.start`) with a
  sampler that samples nothing (``always_off``): the cost every request pays when tracing is on;
* ``on, sampled``: the default sampler, every request sampled: the server span, four stage
  spans, exported in batches over OTLP/HTTP to a receiver in another process
  (``python -m rankswap_dev.otlpsink``), so the export thread's CPU is counted, the
  receiver's is not. Each turn ends with a ``force_flush``, inside the measured time.

CPU per request = ``process_time`` over a turn ÷ its calls; medians over the rounds.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def section(
    world: Any, bodies: dict[str, dict[str, Any]], work: Path, rounds: int = 20, calls: int = 25
) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from rankswap_ranker import bundle as bundles
    from rankswap_ranker import spans
    from rankswap_ranker.app import create_app
    from rankswap_ranker.candidates import LazyProductDB
    from rankswap_ranker.metrics import RankerMetrics
    from rankswap_ranker.registry import BundleRegistry
    from rankswap_ranker.settings import RankerSettings
    from rankswap_ranker.tracing import TracingConfig

    bundle = bundles.load(
        bundles.resolve(world.model_uri, world.features_uri, work / "inproc-cache"), prefault=True
    )
    registry: BundleRegistry[bundles.Bundle] = BundleRegistry()
    registry.activate(bundle)
    source = LazyProductDB(world.db_url)
    sink = subprocess.Popen(
        [sys.executable, "-m", "rankswap_dev.otlpsink"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline().split()[1])
        endpoint = f"http://127.0.0.1:{port}/v1/traces"
        on = {
            name: spans.start(TracingConfig(("otlp",), endpoint, sampler, None, "bench"), 0)
            for name, sampler in (("on, not sampled", "always_off"), ("on, sampled", "always_on"))
        }
        settings = RankerSettings(run_dir=work / "asgi-run")

        def app(tracing: Any) -> Any:
            return create_app(
                settings,
                registry,
                source,
                metrics=RankerMetrics(CollectorRegistry()),
                tracing=tracing,
            )

        apps = {"off": (app(None), None), **{k: (app(t), t) for k, t in on.items()}}
        out: dict[str, Any] = {}
        for tenant, body in bodies.items():
            out[tenant] = _turns(apps, json.dumps(body).encode(), rounds, calls)
        for t in on.values():
            t.shutdown()
    finally:
        source.close()
        sink.terminate()  # it prints how many spans it received
        _, err = sink.communicate(timeout=30)
    spans_received = int(err.split()[-1]) if err.strip().startswith("spans") else -1
    return {
        "per_tenant": out,
        "rounds": rounds,
        "calls": calls,
        "spans_received": spans_received,
    }


def _turns(
    apps: dict[str, tuple[Any, Any]], raw: bytes, rounds: int, calls: int
) -> dict[str, float]:
    """Median CPU ms per request of each app (round 0 warms up), and wall-clock medians."""
    from rankswap_dev.bench_ranker.cost import asgi_scope

    scope = asgi_scope(raw)
    request = {"type": "http.request", "body": raw, "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"in-process ASGI call answered {message['status']}")

    async def run() -> dict[str, float]:
        cpu: dict[str, list[float]] = {name: [] for name in apps}
        wall: dict[str, list[float]] = {name: [] for name in apps}
        for r in range(rounds + 1):
            for name, (app, tracing) in apps.items():
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(calls):
                    await app(dict(scope), receive, send)
                if tracing is not None:
                    tracing.provider.force_flush()
                if r:
                    cpu[name].append((time.process_time() - c0) * 1000 / calls)
                    wall[name].append((time.perf_counter() - w0) * 1000 / calls)
        doc = {name: statistics.median(v) for name, v in cpu.items()}
        doc.update({f"{name} wall": statistics.median(v) for name, v in wall.items()})
        return doc

    import uvloop

    return uvloop.run(run())


def report(x: dict[str, Any], label: dict[str, str]) -> list[str]:
    lines = [
        "### Tracing: CPU per request, off and on (in process, same run)",
        "",
        f"The public app called in process with each tenant's first body, the three builds "
        f"taking turns, {x['rounds']} rounds of {x['calls']} calls, medians; *sampled* exports "
        "every request's 5 spans over OTLP/HTTP to a receiver in another process (flushed "
        f"inside each turn; {x['spans_received']:,} spans received).",
        "",
        "| tenant | off CPU ms | on, not sampled | Δ off | on, sampled | Δ off | × off "
        "| off wall ms | sampled wall ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t, a in x["per_tenant"].items():
        off, ns, s = a["off"], a["on, not sampled"], a["on, sampled"]
        lines.append(
            f"| {t} ({label.get(t, '')}) | {off:.3f} | {ns:.3f} | {ns - off:+.3f} | {s:.3f} | "
            f"{s - off:+.3f} | {s / off:.2f} | {a['off wall']:.3f} | {a['on, sampled wall']:.3f} |"
        )
    lines.append("")
    return lines
