"""What the shadow comparison costs: CPU per request and the client's latency, by sample rate.

One worker's rank path in-process (the real bundles of two days of the pipelines, the real
product DB, ``rankswap_ranker.ranking.rank`` then ``Shadow.offer`` as the route calls it) with
the shadow thread running, at sample rates 0 (off), 0.1 (the default) and 1.0. Rates are run in
interleaved rounds (0, 0.1, 1, 0, 0.1, 1, ...) so they share the machine's state; per rate:
process CPU time per request (request path + shadow thread, measured until every sampled
request is compared or dropped), the client's latency (rank + offer) p50/p99, and what
``offer`` itself costs.

``python -m rankswap_dev.bench_shadow [--work DIR] [--requests N] [--rounds R]``; results go to
docs/BENCHMARKS.md ("Shadow comparison").
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from rankswap.artifacts import artifact_uri
from rankswap.featurespec import FEATURE_SCHEMA_VERSION
from rankswap.productdb import ProductDB
from rankswap_ranker import bundle as bundles
from rankswap_ranker.candidates import LazyProductDB
from rankswap_ranker.ranking import RankQuery, rank
from rankswap_ranker.registry import BundleRegistry
from rankswap_ranker.shadow import Shadow, ShadowMetrics

RATES = (0.0, 0.1, 1.0)


def rankswap(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "rankswap.cli", "--log-level", "WARNING", *args], check=True
    )


def publish(work: Path) -> tuple[str, str, list[date]]:
    db_url, store = f"sqlite:///{work / 'product.db'}", (work / "store").as_uri()
    rankswap("datagen", "--db", db_url, "--seed", "3")
    rng = ProductDB(db_url).expense_date_range()
    assert rng is not None
    days = [rng[1] + timedelta(days=i) for i in range(2)]
    for when in days:
        rankswap("features", "build", "--db", db_url, "--as-of", when.isoformat(), "--store", store)
        rankswap("model", "train", "--db", db_url, "--as-of", when.isoformat(), "--store", store,
                 "--max-train-expenses", "3000", "--max-eval-expenses", "300")  # fmt: skip
    return db_url, store, days


def queries(db_path: Path, when: date, n: int) -> list[RankQuery]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "select tenant_id, employee_id, vendor_id, description, amount from expenses "
            "order by expense_date desc, id limit ?",
            (n,),
        ).fetchall()
    return [RankQuery(t, e, v, d, float(a), when, 5) for t, e, v, d, a in rows]


def run_batch(
    registry: BundleRegistry[bundles.Bundle],
    source: LazyProductDB,
    qs: list[RankQuery],
    rate: float,
    seed: int,
) -> dict[str, float | list[float]]:
    shadow = Shadow(
        registry,
        ShadowMetrics(CollectorRegistry()),
        sample_rate=rate,
        queue_size=8,
        rng=random.Random(seed),
    )
    shadow.start()
    latencies: list[float] = []
    offers: list[float] = []
    cpu0 = time.process_time()
    for q in qs:
        t0 = time.perf_counter()
        outcome = rank(registry.current(), source, q)
        t1 = time.perf_counter()
        shadow.offer(outcome)
        t2 = time.perf_counter()
        latencies.append(t2 - t0)
        offers.append(t2 - t1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = shadow.comparisons()
        if not done or done[0].compared + done[0].dropped >= done[0].sampled:
            break
        time.sleep(0.001)
    cpu = time.process_time() - cpu0
    shadow.stop()
    c = shadow.comparisons()
    return {
        "cpu_s": cpu,
        "latencies": latencies,
        "offers": offers,
        "compared": float(c[0].compared if c else 0),
        "dropped": float(c[0].dropped if c else 0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rankswap_dev.bench_shadow", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--work", type=Path, default=Path("work/bench-shadow"))
    parser.add_argument("--requests", type=int, default=400, help="per rate and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="use the product DB and store already in --work (from an earlier run, or from "
        "bench_rollout's work folder): its two first dates",
    )
    args = parser.parse_args(argv)
    work = args.work.resolve()
    if args.reuse:
        db_url, store = f"sqlite:///{work / 'product.db'}", (work / "store").as_uri()
        rng = ProductDB(db_url).expense_date_range()
        assert rng is not None
        d0, d1 = rng[1], rng[1] + timedelta(days=1)
        work = work / "bench-shadow"
        work.mkdir(exist_ok=True)
        shutil.copy(work.parent / "product.db", work / "product.db")
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        print("publishing two dated bundles ...", flush=True)
        db_url, store, (d0, d1) = publish(work)
    cache = work / "cache"
    loaded = [
        bundles.load(
            bundles.resolve(
                artifact_uri(store, "model", "line-items", when),
                artifact_uri(store, "features", FEATURE_SCHEMA_VERSION, when),
                cache,
            )
        )
        for when in (d0, d1)
    ]
    registry: BundleRegistry[bundles.Bundle] = BundleRegistry(1)
    for b in loaded:
        registry.activate(b)  # d1 active, d0 warm: the pod after a promotion
    source = LazyProductDB(db_url)
    qs = queries(work / "product.db", d1, 200)
    batch = [qs[i % len(qs)] for i in range(args.requests)]
    for q in batch[:50]:
        rank(registry.current(), source, q)  # warm the caches
    acc: dict[float, dict[str, list[float]]] = {
        r: {"cpu_s": [], "latencies": [], "offers": [], "compared": [], "dropped": []}
        for r in RATES
    }
    for round_ in range(args.rounds):
        for rate in RATES:
            out = run_batch(registry, source, batch, rate, round_)
            for key, value in out.items():
                acc[rate][key].extend(value if isinstance(value, list) else [value])
    n = args.requests * args.rounds
    rows: dict[str, dict[str, float]] = {}
    for rate in RATES:
        a = acc[rate]
        lat = sorted(a["latencies"])
        rows[str(rate)] = {
            "cpu_ms_per_request": 1e3 * sum(a["cpu_s"]) / n,
            "p50_ms": 1e3 * lat[len(lat) // 2],
            "p99_ms": 1e3 * lat[int(len(lat) * 0.99)],
            "offer_median_us": 1e6 * statistics.median(a["offers"]),
            "offer_max_us": 1e6 * max(a["offers"]),
            "compared": sum(a["compared"]),
            "dropped": sum(a["dropped"]),
        }
    base = rows["0.0"]
    print(f"\n{n} requests per rate ({args.rounds} interleaved rounds), one process")
    print(
        f"{'rate':<6} {'CPU ms/req':>10} {'x off':>6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'offer µs (median/max)':>22} {'compared':>9} {'dropped':>8}"
    )
    for label, r in rows.items():
        print(
            f"{label:<6} {r['cpu_ms_per_request']:10.3f} {r['cpu_ms_per_request'] / base['cpu_ms_per_request']:6.2f} "
            f"{r['p50_ms']:7.3f} {r['p99_ms']:7.3f} {r['offer_median_us']:10.1f}/{r['offer_max_us']:<11.1f} "
            f"{r['compared']:9.0f} {r['dropped']:8.0f}"
        )
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
