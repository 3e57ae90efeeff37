"""Rollout latency: ``kubectl apply`` of an ArtifactVersion -> every pod confirmed on the bundle.

Runs the whole stack locally (real API server, the operator as its ServiceAccount, ranker pods as
local processes) and times, for 3 and for 10 pods:

* a promotion to a bundle the pods have never loaded (download + verify + load + smoke test),
* a rollback to the previous bundle, still warm in every worker (a pointer swap),
* a promotion back to a warm bundle;
* with a ``Canary`` spec (1 canary pod verified 2 s, then batches of 2): a rollback to the warm
  previous bundle with ``instantRollback: false`` (the canary runs again) and with the default
  ``instantRollback: true`` (every pod at once), side by side in the same run.

``python -m rankswap_dev.bench_rollout [--work DIR] [--repeat N] [--only-rollbacks]``; results go
to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from rankswap import featurespec as fs
from rankswap.artifacts import artifact_uri, read_manifest
from rankswap.productdb import ProductDB
from rankswap_dev.localkube.stack import LocalStack

AV = "bench"


def rankswap(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "rankswap.cli", "--log-level", "WARNING", *args], check=True
    )


def publish(work: Path) -> tuple[str, str, list[date]]:
    db_url, store = f"sqlite:///{work / 'product.db'}", (work / "store").as_uri()
    rankswap("datagen", "--db", db_url, "--seed", "3")
    rng = ProductDB(db_url).expense_date_range()
    assert rng is not None
    days = [rng[1] + timedelta(days=i) for i in range(3)]
    for when in days:
        rankswap("features", "build", "--db", db_url, "--as-of", when.isoformat(), "--store", store)
        rankswap("model", "train", "--db", db_url, "--as-of", when.isoformat(), "--store", store,
                 "--max-train-expenses", "3000", "--max-eval-expenses", "300")  # fmt: skip
    return db_url, store, days


CANARY = {"strategy": "Canary", "canaryPods": 1, "canaryVerifySeconds": 2, "batchSize": 2}


def timed_apply(
    stack: LocalStack, when: date, pods: int, rollout: dict[str, object] | None = None
) -> float:
    version = read_manifest(artifact_uri(stack.store, "model", "line-items", when)).version
    body = stack.artifact_version(AV, when, rollout=rollout)
    start = time.monotonic()
    stack.apply(body)
    stack.wait_serving(AV, version, pods=pods)
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rankswap_dev.bench_rollout", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--work", type=Path, default=Path("work/bench-rollout"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--only-rollbacks",
        action="store_true",
        help="only the canary-spec rollbacks, instantRollback false vs true",
    )
    args = parser.parse_args(argv)
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print("publishing three dated bundles ...", flush=True)
    db_url, store, (d0, d1, d2) = publish(work)
    sizes = {
        "model": read_manifest(artifact_uri(store, "model", "line-items", d1)).total_bytes,
        "features": read_manifest(
            artifact_uri(store, "features", fs.FEATURE_SCHEMA_VERSION, d1)
        ).total_bytes,
    }
    # One cycle, starting on d0 (each worker keeps 1 warm bundle, the default):
    cycle = [
        (d1, "promotion, not warm"),
        (d0, "rollback, warm"),
        (d1, "promotion, warm"),
        (d2, "promotion, not warm"),
        (d0, "promotion, not warm"),
    ]
    results: dict[str, dict[str, list[float]]] = {}
    with LocalStack(work, database_url=db_url, store=store) as stack:
        for n_pods in (3, 10):
            while len(stack.rankers) < n_pods:
                stack.add_ranker(f"ranker-{len(stack.rankers)}")
            # 3 pods: the first apply loads d0 from the store. 10 pods: the 7 new pods join and
            # are brought to d0 (the resource is unchanged; the drift check serves them).
            fetched = {d0}  # versions already in every pod's local cache
            start = "first apply (operator start, download)" if n_pods == 3 else "7 new pods join"
            row: dict[str, list[float]] = {start: [timed_apply(stack, d0, n_pods)]}
            timed_apply(stack, d1, n_pods)  # d1 good once, d0 warm behind it
            fetched.add(d1)
            for _ in range(args.repeat):
                # A warm rollback d1 -> d0 under a Canary spec, the canary run again, then not.
                for instant in (False, True):
                    timed_apply(stack, d1, n_pods, {**CANARY, "instantRollback": True})
                    label = f"Canary spec: warm rollback, instantRollback {str(instant).lower()}"
                    seconds = timed_apply(stack, d0, n_pods, {**CANARY, "instantRollback": instant})
                    row.setdefault(label, []).append(seconds)
            for _ in range(0 if args.only_rollbacks else args.repeat):
                for when, scenario in cycle:
                    label = scenario if when in fetched else "first load of a version (download)"
                    fetched.add(when)
                    row.setdefault(label, []).append(timed_apply(stack, when, n_pods))
            results[f"{n_pods} pods"] = row
    print(
        f"\nartifact sizes: model {sizes['model'] / 1e3:.0f} kB, features {sizes['features'] / 1e6:.1f} MB"
    )
    print(f"{'pods':<8} {'scenario':<40} {'median s':>9} {'min s':>7} {'max s':>7}  runs")
    for label, row in results.items():
        for scenario, values in row.items():
            print(
                f"{label:<8} {scenario:<40} {statistics.median(values):9.2f} {min(values):7.2f} {max(values):7.2f}  {len(values)}"
            )
    (work / "results.json").write_text(json.dumps({"sizes": sizes, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
