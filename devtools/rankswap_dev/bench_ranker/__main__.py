"""``python -m rankswap_dev.bench_ranker``: the ranker's benchmarks, one run, one report.

Sections (``--sections``, all by default):

* ``breakdown``  in-process cost of one /v1/rank for 1,000 candidates, stage by stage
* ``baseline``   the seed design (``Manager().dict()`` filled with ``iterrows``, one proxy
                 ``get`` per candidate) against rankswap's memory-mapped columnar tables
* ``http``       throughput and p50/p99 through uvicorn, 1 and 2 workers, 100 / 1,000 / 5,000
                 candidates, from a separate load-generator process; RSS/PSS per worker
* ``swap``       a bundle swap every second for a minute under open-loop load, rotating three
                 bundles (one kept warm), so every swap is a real load in every worker
* ``swap-warm``  the same alternating two bundles: every swap is a warm pointer swap
* ``real``       the real pipelines' model and features (built with ``rankswap datagen``,
                 ``features build``, ``model train`` unless ``--db``/``--store`` are given) and
                 the real product DB: in-process breakdown and HTTP throughput for tenants of
                 ~100, ~1,000 and the most items, side by side with the synthetic model
                 (``--real`` runs this section alone)
* ``cost``       on the same real world: worker CPU time per request of ``rankswap serve`` (one
                 worker) and of a minimal FastAPI peer calling the same ``rank()``, loaded by
                 ``wrk`` and the project's load generator, next to the in-process cost: the
                 HTTP overhead per request; then open loop at fixed offered rates
                 (``--open-rates``, ``--open-duration``) on both, with ``vegeta`` (built when
                 ``go`` is on PATH) and the project's generator (``--cost`` runs this alone)
* ``tracing``    on the same real world, in process: CPU per request of the public app with
                 tracing off, on but not sampled, and on with every request sampled and
                 exported over OTLP/HTTP (``--sections tracing`` runs it alone)

The report (markdown) goes to stdout and the raw numbers to ``<workdir>/results.json``.
Ratios are computed from numbers measured in the same run.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rankswap_dev.bench_ranker import cost, options
from rankswap_dev.wait import wait_until

SECTIONS = ("breakdown", "baseline", "http", "swap", "swap-warm", "real", "cost", "tracing")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m rankswap_dev.bench_ranker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--workdir", type=Path, default=Path("work/bench"))
    p.add_argument("--items", type=int, default=1_000_000, help="item feature rows (1M)")
    p.add_argument("--baseline-rows", type=int, default=1_000_000, help="rows for the seed design")
    p.add_argument("--trees", type=int, default=200)
    p.add_argument("--leaves", type=int, default=31)
    p.add_argument(
        "--small-model",
        default="50x15",
        help="TREESxLEAVES of a second, cheaper model in the breakdown ('' for none)",
    )
    p.add_argument("--iterations", type=int, default=300, help="in-process rank calls")
    p.add_argument("--duration", type=float, default=6.0, help="seconds per HTTP load run")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--swap-seconds", type=float, default=60.0)
    p.add_argument(
        "--swap-window",
        type=float,
        default=5.0,
        help="seconds of each swapping window (steady windows alternate with them)",
    )
    p.add_argument(
        "--swap-rate",
        type=float,
        default=0.0,
        help="req/s during the swap test "
        "(0: half the 2-worker throughput measured by 'http', else 100)",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, short runs (development)")
    p.add_argument(
        "--real", action="store_true", help="only the real-artifact section (= --sections real)"
    )
    p.add_argument(
        "--cost", action="store_true", help="only the serving-cost section (= --sections cost)"
    )
    p.add_argument(
        "--open-rates",
        type=options.rates,
        default=",".join(f"{r:g}" for r in cost.OPEN_RATES),
        help="cost: offered rates of the fixed-rate open loop, req/s, comma-separated "
        "(default %(default)s)",
    )
    p.add_argument(
        "--open-duration",
        type=options.duration_s,
        default=cost.OPEN_DURATION_S,
        help="cost: seconds per fixed-rate open-loop run (default %(default)s)",
    )
    p.add_argument("--db", default=None, help="product DB URL for 'real' (default: generate one)")
    p.add_argument(
        "--store", default=None, help="artifact store URI for 'real' (default: build one)"
    )
    args = p.parse_args(argv)
    if args.real:
        args.sections = "real"
    if args.cost:
        args.sections = "cost"
    if args.quick:
        args.items, args.baseline_rows, args.iterations = 200_000, 50_000, 100
        args.duration, args.swap_seconds = 2.0, 10.0
    sections = [s for s in args.sections.split(",") if s]
    results: dict[str, Any] = {
        "started_at": datetime.now().isoformat(timespec="seconds"),
        "command": "python -m rankswap_dev.bench_ranker "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_at_start": os.getloadavg(),
        },
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    synthetic = [s for s in sections if s not in ("real", "cost", "tracing")]
    env = Environment(args) if synthetic else None
    runners: dict[str, Callable[[Environment, argparse.Namespace, dict[str, Any]], Any]] = {
        "breakdown": section_breakdown,
        "baseline": section_baseline,
        "http": section_http,
        "swap": section_swap,
        "swap-warm": section_swap_warm,
        "real": section_real,
        "cost": section_cost,
        "tracing": section_tracing,
    }
    for section in sections:
        print(f"# running {section} ...", file=sys.stderr, flush=True)
        results[section] = runners[section](env, args, results)  # type: ignore[arg-type]
    results["machine"]["load_avg_at_end"] = os.getloadavg()
    args.workdir.mkdir(parents=True, exist_ok=True)
    out = args.workdir / "results.json"
    out.write_text(json.dumps(results, indent=2))
    print(report(results))
    print(f"\n(raw numbers: {out})")
    return 0


class Environment:
    """Data shared by the sections: feature tables, three published bundles, a product DB."""

    def __init__(self, args: argparse.Namespace) -> None:
        from rankswap import featurespec as fs
        from rankswap_dev.bench_ranker import data

        self.work = args.workdir.resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.root = self.work / "store"
        t0 = time.perf_counter()
        self.tables = data.feature_tables(args.items)
        self.bundles = [
            data.publish(
                self.root,
                self.work,
                self.tables,
                as_of=date(2026, 11, 20 + i),
                trees=args.trees,
                leaves=args.leaves,
                seed=i,
            )
            for i in range(3)
        ]
        self.small = None
        if args.small_model:
            trees, leaves = (int(x) for x in args.small_model.split("x"))
            self.small = data.publish(
                self.root,
                self.work,
                self.tables,
                as_of=date(2026, 11, 30),
                trees=trees,
                leaves=leaves,
                seed=9,
                features_dir=self.root / "features" / fs.FEATURE_SCHEMA_VERSION / "2026-11-20",
            )
        self.db_url = data.product_db(self.work / "product.db")
        print(f"# data ready in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


# Sections -------------------------------------------------------------------------------------


def section_breakdown(
    env: Environment, args: argparse.Namespace, _: dict[str, Any]
) -> dict[str, Any]:
    from rankswap_dev.bench_ranker.data import rank_body

    def measure(b: Any, tenants: tuple[str, ...]) -> dict[str, Any]:
        return breakdown(
            env.work / "inproc-cache",
            b.model_uri,
            b.features_uri,
            env.db_url,
            {t: functools.partial(rank_body, t) for t in tenants},
            {
                t: args.iterations if t == "t1000" else max(30, args.iterations // 5)
                for t in tenants
            },
        )

    result = measure(env.bundles[0], ("t100", "t1000", "t5000"))
    result["model"] = (
        f"synthetic GBDT {args.trees} trees x {args.leaves} leaves (ONNX TreeEnsemble)"
    )
    if env.small is not None:
        result["small"] = measure(env.small, ("t1000",))["t1000"]
        result["small_model"] = (
            f"synthetic GBDT {args.small_model.replace('x', ' trees x ')} leaves"
        )
    return result


def breakdown(
    cache: Path,
    model_uri: str,
    features_uri: str,
    db_url: str,
    bodies: dict[str, Callable[[int], dict[str, Any]]],
    iterations: dict[str, int],
) -> dict[str, Any]:
    """In-process stage times of ``ranking.rank`` per tenant (medians, ms), after 10 warm-up
    calls; request ``i`` of a tenant is ``bodies[tenant](i)``."""
    from rankswap_ranker import bundle as bundles
    from rankswap_ranker.candidates import LazyProductDB
    from rankswap_ranker.ranking import rank
    from rankswap_ranker.routes import rank_query
    from rankswap_ranker.schemas import RankRequest

    ref = bundles.resolve(model_uri, features_uri, cache)
    bundle = bundles.load(ref, prefault=True)
    source = LazyProductDB(db_url)
    out: dict[str, Any] = {}
    for tenant, body in bodies.items():
        stages: dict[str, list[float]] = {}
        totals, parse = [], []
        raws = [json.dumps(body(i)).encode() for i in range(iterations[tenant] + 10)]
        cpu0 = cpu_ms = 0.0
        for i, raw in enumerate(raws):
            if i == 10:
                cpu0 = time.process_time()
            t0 = time.perf_counter()
            req = RankRequest.model_validate_json(raw)
            t1 = time.perf_counter()
            outcome = rank(bundle, source, rank_query(req, 5))
            t2 = time.perf_counter()
            if i == len(raws) - 1:
                cpu_ms = (time.process_time() - cpu0) * 1000 / iterations[tenant]
            if i < 10:
                continue  # warm-up
            parse.append(t1 - t0)
            totals.append(t2 - t0)
            for k, v in outcome.timings.items():
                stages.setdefault(k, []).append(v)
        doc = {"candidates": outcome.candidates, "parse_ms": _median_ms(parse)}
        doc.update({f"{k}_ms": _median_ms(v) for k, v in stages.items()})
        doc["total_ms"] = _median_ms(totals)
        doc["total_p99_ms"] = float(np.percentile(totals, 99) * 1000)
        doc["cpu_ms"] = cpu_ms  # process CPU per parse + rank() call
        no_model = [t - m for t, m in zip(totals, stages["model"], strict=True)]
        doc["total_without_model_ms"] = _median_ms(no_model)
        out[tenant] = doc
    source.close()
    return out


def _cycle(items: list[dict[str, Any]], i: int) -> dict[str, Any]:
    return items[i % len(items)]


_WORLD: dict[str, Any] = {}


def _real_world(args: argparse.Namespace) -> tuple[Any, dict[str, int], dict[str, str], Any]:
    """The real world (built once per run), tenant sizes, picked tenants and their bodies."""
    from rankswap_dev.bench_ranker import real

    if not _WORLD:
        work = args.workdir.resolve() / "real"
        t0 = time.perf_counter()
        world = real.build_world(work, args.db, args.store)
        print(f"# real world ready in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
        sizes = real.tenant_sizes(world.db_url)
        picked = real.pick_tenants(sizes)
        bodies = {
            t: real.rank_bodies(world.db_url, t, world.as_of, real.REQUESTS_PER_TENANT)
            for t in dict.fromkeys(picked.values())
        }
        _WORLD.update(world=world, sizes=sizes, picked=picked, bodies=bodies)
    return _WORLD["world"], _WORLD["sizes"], _WORLD["picked"], _WORLD["bodies"]


def section_cost(_: Any, args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:

    world, _sizes, picked, all_bodies = _real_world(args)
    work = args.workdir.resolve() / "real"
    bodies = {t: all_bodies[t] for t in dict.fromkeys((picked["~100"], picked["~1000"]))}
    inproc = breakdown(
        work / "inproc-cache",
        world.model_uri,
        world.features_uri,
        world.db_url,
        {t: functools.partial(_cycle, b) for t, b in bodies.items()},
        {t: args.iterations for t in bodies},
    )
    doc = cost.section(
        world,
        bodies,
        inproc,
        work,
        args.duration,
        args.concurrency,
        open_rates=args.open_rates,
        open_duration=args.open_duration,
    )
    doc["breakdown"] = inproc
    doc["gbdt"] = _gbdt(world, bodies, work, args.iterations)
    doc["picked"] = picked
    return doc


def section_tracing(_: Any, args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    from rankswap_dev.bench_ranker import tracing

    world, sizes, picked, all_bodies = _real_world(args)
    tenants = dict.fromkeys((picked["~100"], picked["~1000"]))
    doc = tracing.section(
        world, {t: all_bodies[t][0] for t in tenants}, args.workdir.resolve() / "real"
    )
    doc.update(picked=picked, sizes={t: sizes[t] for t in tenants})
    return doc


def _gbdt(world: Any, bodies: dict[str, Any], work: Path, calls: int) -> dict[str, Any]:
    """ORT vs the compiled trees on the real model's trees and the tenants' rows."""
    from rankswap import featurespec as fs
    from rankswap_dev.bench_ranker import gbdt, real
    from rankswap_ranker import bundle as bundles
    from rankswap_ranker.candidates import LazyProductDB
    from rankswap_ranker.ranking import rank

    bundle = bundles.load(
        bundles.resolve(world.model_uri, world.features_uri, work / "inproc-cache")
    )
    source = LazyProductDB(world.db_url)
    inputs: dict[str, list[Any]] = {}
    try:
        for tenant, tenant_bodies in bodies.items():
            inputs[tenant] = []
            for b in tenant_bodies[:20]:
                # the context and candidates through rank(), whose signature main's tree shares
                # (main-vs-head runs put main's serving code under this bench)
                out = rank(bundle, source, real.body_query(tenant, b, top_k=5))
                assert out.context is not None and out.cands is not None
                ctx, cands = out.context, out.cands
                inputs[tenant].append(fs.assemble(ctx, cands, bundle.tables))
    finally:
        source.close()
    return gbdt.compare(bundle, inputs, calls)


def section_real(_: Any, args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    from rankswap_dev.bench_ranker import harness, real

    work = args.workdir.resolve() / "real"
    world, sizes, picked, bodies = _real_world(args)
    doc: dict[str, Any] = {
        "db_url": world.db_url,
        "store": world.store,
        "as_of": world.as_of.isoformat(),
        "build_s": world.build_s,
        "tenant_sizes": sizes,
        "picked": picked,
        "model": real.model_info(world, work / "inproc-cache"),
    }
    iterations = {t: args.iterations for t in bodies}
    doc["breakdown"] = breakdown(
        work / "inproc-cache",
        world.model_uri,
        world.features_uri,
        world.db_url,
        {t: functools.partial(_cycle, b) for t, b in bodies.items()},
        iterations,
    )
    doc["db_uncached_ms"] = {
        t: real.db_miss_ms(world.db_url, t, max(50, args.iterations // 2)) for t in bodies
    }
    root = Path(world.store.removeprefix("file://"))
    http: dict[str, Any] = {}
    for workers in (1, 2):
        with harness.ranker_pod(
            work / f"pod-{workers}w",
            workers=workers,
            database_url=world.db_url,
            root=root,
            model_uri=world.model_uri,
            features_uri=world.features_uri,
        ) as pod:
            runs: dict[str, Any] = {}
            for tenant in bodies:
                body = bodies[tenant][0]
                url = f"{pod.public}/v1/rank"
                harness.load_result(
                    harness.loadgen(url, body, duration=1.0, concurrency=args.concurrency)
                )  # warm-up
                gen = harness.loadgen(
                    url, body, duration=args.duration, concurrency=args.concurrency
                )
                res = harness.load_result(gen)
                runs[tenant] = harness.summarise(res["requests"], res["elapsed_s"])
            http[f"{workers}w"] = runs
    doc["http"] = http
    return doc


def section_baseline(
    env: Environment, args: argparse.Namespace, _: dict[str, Any]
) -> dict[str, Any]:
    from rankswap import featurespec as fs
    from rankswap_dev.bench_ranker import seed

    features = env.root / "features" / fs.FEATURE_SCHEMA_VERSION / "2026-11-20"
    return seed.compare(features, args.baseline_rows)


def section_http(env: Environment, args: argparse.Namespace, _: dict[str, Any]) -> dict[str, Any]:
    from rankswap_dev.bench_ranker import harness
    from rankswap_dev.bench_ranker.data import rank_body

    b = env.bundles[0]
    out: dict[str, Any] = {}
    for workers in (1, 2):
        with harness.ranker_pod(
            env.work / f"pod-{workers}w",
            workers=workers,
            database_url=env.db_url,
            root=env.root,
            model_uri=b.model_uri,
            features_uri=b.features_uri,
        ) as pod:
            runs: dict[str, Any] = {}
            for tenant in ("t100", "t1000", "t5000"):
                gen = harness.loadgen(
                    f"{pod.public}/v1/rank",
                    rank_body(tenant),
                    duration=1.0,
                    concurrency=args.concurrency,
                )
                harness.load_result(gen)  # warm-up
                gen = harness.loadgen(
                    f"{pod.public}/v1/rank",
                    rank_body(tenant),
                    duration=args.duration,
                    concurrency=args.concurrency,
                )
                res = harness.load_result(gen)
                runs[tenant] = harness.summarise(res["requests"], res["elapsed_s"])
            features_root = pod.cache_dir / "features"
            runs["memory"] = [harness.memory(pid, features_root) for pid in pod.worker_pids()]
            runs["feature_bytes_mib"] = env.tables.nbytes / 2**20
            out[f"{workers}w"] = runs
    return out


def section_swap_warm(
    env: Environment, args: argparse.Namespace, results: dict[str, Any]
) -> dict[str, Any]:
    return section_swap(env, args, results, rotate=2)


def section_swap(
    env: Environment, args: argparse.Namespace, results: dict[str, Any], rotate: int = 3
) -> dict[str, Any]:
    from rankswap_dev.bench_ranker import harness
    from rankswap_dev.bench_ranker.data import rank_body

    rate = args.swap_rate
    if not rate:
        measured = results.get("http", {}).get("2w", {}).get("t1000", {}).get("rps")
        rate = round(measured / 2) if measured else 100.0
    a = env.bundles[0]
    with harness.ranker_pod(
        env.work / f"pod-swap-{rotate}",
        workers=2,
        database_url=env.db_url,
        root=env.root,
        model_uri=a.model_uri,
        features_uri=a.features_uri,
    ) as pod:
        # Every bundle validated once by the supervisor before the measured run.
        for b in (*env.bundles[1:], a):
            pod.push(b.model_uri, b.features_uri)
            wait_until(lambda: pod.state()["converged"], 120, 0.2, what="warm-up swap")
        # Swap windows alternate with steady windows of the same length, so that the noise of
        # a shared machine falls on both phases alike: (steady, swapping) x cycles.
        window = args.swap_window
        cycles = max(1, round(args.swap_seconds / window))
        lead = 1.0
        total = lead + 2 * window * cycles + 0.5
        gen = harness.loadgen(
            f"{pod.public}/v1/rank", rank_body("t1000"), duration=total, concurrency=32, rate=rate
        )
        t0 = time.monotonic() + 0.05  # the load generator's time zero (approximately)
        pushes = 0
        for c in range(cycles):
            start = t0 + lead + (2 * c + 1) * window
            time.sleep(max(0.0, start - time.monotonic()))
            for k in range(int(window)):
                # Rotating 3 with 1 warm: each swap is a real load; rotating 2: a pointer swap.
                b = env.bundles[(pushes + 1) % rotate]
                pod.push(b.model_uri, b.features_uri)
                pushes += 1
                time.sleep(max(0.0, start + k + 1 - time.monotonic()))
        res = harness.load_result(gen)
        state = pod.state()
    reqs = res["requests"]

    def phase(r: list[float]) -> str:
        if r[0] < lead:
            return "warm-up"
        pos = (r[0] - lead) % (2 * window)
        if pos >= window:
            return "swaps"
        return "steady" if pos >= 1.0 else "settling"  # 1 s after the last swap: excluded

    steady = [r for r in reqs if phase(r) == "steady"]
    swaps = [r for r in reqs if phase(r) == "swaps"]
    doc: dict[str, Any] = {
        "offered_rps": rate,
        "rotate": rotate,
        "pushes": pushes,
        "window_s": window,
        "worker_loads": [w.get("loads") for w in state["workers"]],
        "worker_rollbacks": [w.get("rollbacks") for w in state["workers"]],
        "worker_load_failures": [w.get("load_failures") for w in state["workers"]],
        "steady": harness.summarise(steady),
        "swaps": harness.summarise(swaps),
    }
    if doc["steady"].get("p99_ms"):
        doc["p99_ratio"] = doc["swaps"]["p99_ms"] / doc["steady"]["p99_ms"]
    gc.collect()
    return doc


# Report ---------------------------------------------------------------------------------------


def report(r: dict[str, Any]) -> str:
    lines = [
        f"Run {r['started_at']}: `{r['command']}`",
        "",
        f"Machine: {r['machine']['cpus']} CPUs, Python {r['machine']['python']}, load average "
        f"{_fmt_load(r['machine']['load_avg_at_start'])} at start, "
        f"{_fmt_load(r['machine'].get('load_avg_at_end'))} at end.",
        "",
    ]
    if "breakdown" in r:
        b = r["breakdown"]
        lines += [
            f"## Per-request cost, in process ({b['model']})",
            "",
            "| candidates | parse | db | features | inputs | model | top-k | serialise | total (p50) | total p99 | total without model |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for t in ("t100", "t1000", "t5000"):
            d = b[t]
            lines.append(
                f"| {d['candidates']:,} | "
                + " | ".join(
                    f"{d[k]:.3f}"
                    for k in (
                        "parse_ms",
                        "db_ms",
                        "features_ms",
                        "inputs_ms",
                        "model_ms",
                        "topk_ms",
                        "serialise_ms",
                        "total_ms",
                        "total_p99_ms",
                        "total_without_model_ms",
                    )
                )
                + " |"
            )
        if "small" in b:
            d = b["small"]
            lines.append(
                f"| {d['candidates']:,}, {b['small_model']} | "
                + " | ".join(
                    f"{d[k]:.3f}"
                    for k in (
                        "parse_ms",
                        "db_ms",
                        "features_ms",
                        "inputs_ms",
                        "model_ms",
                        "topk_ms",
                        "serialise_ms",
                        "total_ms",
                        "total_p99_ms",
                        "total_without_model_ms",
                    )
                )
                + " |"
            )
        lines += ["", "(milliseconds, medians; 'serialise' includes reading the top-k names)", ""]
    if "baseline" in r:
        s = r["baseline"]
        lines += [
            "## Seed design vs rankswap (same run)",
            "",
            "| | seed: Manager().dict() + iterrows | rankswap: mmapped Arrow + searchsorted | ratio |",
            "|---|---|---|---|",
            f"| lookup, 1,000 candidates | {s['seed_lookup_ms']:.2f} ms | {s['rs_lookup_ms']:.3f} ms (item table gather) / {s['rs_assemble_ms']:.3f} ms (all features) | {s['lookup_ratio']:.0f}x / {s['assemble_ratio']:.0f}x |",
            f"| reload, {s['rows']:,} rows | {s['seed_reload_s']:.1f} s | {s['rs_reload_s'] * 1000:.1f} ms (open + read every page) | {s['reload_ratio']:.0f}x |",
            f"| memory for the table | {s['seed_memory_mib']:.0f} MiB (manager process) | {s['rs_memory_mib']:.0f} MiB (file pages, shared by all workers) | {s['memory_ratio']:.1f}x |",
            "",
        ]
    if "http" in r:
        h = r["http"]
        lines += [
            "## HTTP (separate load-generator process, loopback, closed loop)",
            "",
            "| workers | candidates | req/s | p50 ms | p99 ms | errors |",
            "|---|---|---|---|---|---|",
        ]
        for w in ("1w", "2w"):
            for t in ("t100", "t1000", "t5000"):
                d = h[w][t]
                lines.append(
                    f"| {w[0]} | {t[1:]} | {d['rps']:.0f} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} | {d['errors']:.0f} |"
                )
        lines += [
            "",
            "## Memory per worker (MiB)",
            "",
            "| workers | worker | RSS | PSS | USS | feature files RSS | feature files PSS |",
            "|---|---|---|---|---|---|---|",
        ]
        for w in ("1w", "2w"):
            for i, m in enumerate(h[w]["memory"]):
                lines.append(
                    f"| {w[0]} | {i} | {m['rss_mib']:.0f} | {m['pss_mib']:.0f} | {m['uss_mib']:.0f} | {m['features_rss_mib']:.0f} | {m['features_pss_mib']:.0f} |"
                )
        one = sum(m["features_pss_mib"] for m in h["1w"]["memory"])
        two = sum(m["features_pss_mib"] for m in h["2w"]["memory"])
        lines += [
            "",
            f"Feature tables: {h['1w']['feature_bytes_mib']:.0f} MiB of columns. Combined "
            f"feature PSS: 1 worker {one:.0f} MiB, 2 workers {two:.0f} MiB "
            f"(ratio {two / one if one else float('nan'):.2f}).",
            "",
        ]
    for key in ("swap", "swap-warm"):
        if key not in r:
            continue
        s = r[key]
        kind = (
            "rotating 3 bundles with 1 kept warm, so every swap is a full load in every worker"
            if s["rotate"] == 3
            else "alternating 2 bundles, so every swap is a warm pointer swap"
        )
        lines += [
            f"## Hot swap under load: {kind}",
            "",
            f"{s['pushes']} bundle pushes, one per second, in {s['window_s']:.0f} s windows "
            f"alternating with steady windows of the same length (the first second after a "
            f"swap window is not counted), {s['offered_rps']:.0f} req/s offered (open loop), "
            f"1,000 candidates, 2 workers. Worker loads {s['worker_loads']}, warm switches "
            f"{s['worker_rollbacks']}, failures {s['worker_load_failures']}.",
            "",
            "| phase | requests | errors | p50 ms | p99 ms | max ms |",
            "|---|---|---|---|---|---|",
        ]
        for phase_name in ("steady", "swaps"):
            d = s[phase_name]
            lines.append(
                f"| {phase_name} | {d['requests']:.0f} | {d['errors']:.0f} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} | {d['max_ms']:.1f} |"
            )
        if "p99_ratio" in s:
            lines += ["", f"p99 during swaps / steady: {s['p99_ratio']:.2f}", ""]
    if "real" in r:
        lines += _report_real(r["real"], r.get("breakdown"), r.get("http"))
    if "cost" in r:
        lines += _report_cost(r["cost"])
    if "tracing" in r:
        from rankswap_dev.bench_ranker import tracing

        x = r["tracing"]
        label = {t: f"{x['sizes'][t]:,} items" for t in x["sizes"]}
        lines += tracing.report(x, label)
    return "\n".join(lines)


def _report_cost(x: dict[str, Any]) -> list[str]:

    label = {t: lab for lab, t in reversed(list(x["picked"].items()))}
    lines = [
        "### In-process breakdown of the same tenants (real model; same run as the table below)",
        "",
        "| tenant | candidates | parse | db | features | inputs | model | top-k | serialise "
        "| total (p50) | total p99 | total without model | CPU per call |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t, d in x["breakdown"].items():
        lines.append(
            f"| {t} ({label.get(t, '')}) | {d['candidates']:,} | "
            + " | ".join(f"{d[k]:.3f}" for k in _STAGES)
            + f" | {d['cpu_ms']:.3f} |"
        )
    lines.append("")
    from rankswap_dev.bench_ranker import gbdt

    return lines + cost.report(x, label) + gbdt.report(x.get("gbdt", {"unavailable": "not run"}))


_STAGES = (
    "parse_ms",
    "db_ms",
    "features_ms",
    "inputs_ms",
    "model_ms",
    "topk_ms",
    "serialise_ms",
    "total_ms",
    "total_p99_ms",
    "total_without_model_ms",
)


def _report_real(
    x: dict[str, Any], synth: dict[str, Any] | None, synth_http: dict[str, Any] | None
) -> list[str]:
    m = x["model"]
    label = {t: lab for lab, t in reversed(list(x["picked"].items()))}
    lines = [
        f"## Real artifacts: {m['kind']} {m['trees']} trees x {m['leaves']} leaves "
        f"(model {m['model_version']}, features {m['features_version']}, as of {x['as_of']})",
        "",
        f"Product DB {x['db_url']}; tenants' active items: "
        + ", ".join(f"{t} {n:,}" for t, n in sorted(x["tenant_sizes"].items()))
        + ". Built in "
        + (", ".join(f"{k} {v:.0f} s" for k, v in x["build_s"].items()) or "(given)")
        + ".",
        "",
        "| tenant | candidates | parse | db | features | inputs | model | top-k | serialise | total (p50) | total p99 | total without model | db, cache off |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t, d in x["breakdown"].items():
        lines.append(
            f"| {t} ({label.get(t, '')}) | {d['candidates']:,} | "
            + " | ".join(f"{d[k]:.3f}" for k in _STAGES)
            + f" | {x['db_uncached_ms'][t]:.3f} |"
        )
    lines += [
        "",
        "(milliseconds, medians; requests are the tenant's latest expenses; *db, cache off* is "
        "`ProductDB.candidates` with `cache_candidates=False`, i.e. the query on every call)",
        "",
    ]
    mid = x["picked"]["~1000"]
    if synth is not None and "t1000" in synth:
        s, d = synth["t1000"], x["breakdown"][mid]
        lines += [
            f"Same run, synthetic model (1,000 candidates) vs real model ({mid}, "
            f"{d['candidates']:,} candidates): model {s['model_ms']:.3f} vs {d['model_ms']:.3f} ms "
            f"(synthetic / real {s['model_ms'] / d['model_ms']:.2f}x), features "
            f"{s['features_ms']:.3f} vs {d['features_ms']:.3f} ms, total {s['total_ms']:.3f} vs "
            f"{d['total_ms']:.3f} ms ({s['total_ms'] / d['total_ms']:.2f}x).",
            "",
        ]
    lines += [
        "| workers | tenant | candidates | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for w in ("1w", "2w"):
        for t, d in x["http"][w].items():
            lines.append(
                f"| {w[0]} | {t} ({label.get(t, '')}) | {x['breakdown'][t]['candidates']:,} | "
                f"{d['rps']:.0f} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} | {d['errors']:.0f} |"
            )
    if synth_http is not None and "2w" in synth_http:
        a, b = synth_http["2w"]["t1000"]["rps"], x["http"]["2w"][mid]["rps"]
        lines += [
            "",
            f"Same run, 2 workers: synthetic model at 1,000 candidates {a:.0f} req/s, real model "
            f"at {mid} {b:.0f} req/s (real / synthetic {b / a:.2f}x).",
        ]
    lines.append("")
    return lines


def _fmt_load(load: Any) -> str:
    return "/".join(f"{x:.1f}" for x in load) if load else "?"


if __name__ == "__main__":
    sys.exit(main())
