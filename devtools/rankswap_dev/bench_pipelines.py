"""Pipelines at scale: ``datagen``, ``features build`` and ``model train`` on 0.2 M .. 10 M expenses.

Each point is a synthetic world of ``--scale 2`` with as many tenants as the size needs (the
tenants beyond the first six are smaller copies, ~5,600 expenses each), written to SQLite by
``rankswap datagen``; then ``features build`` and ``model train --no-ablation`` as of the
world's last day + 1, each in its own process, timed (wall) and measured (peak RSS of that
process, ``wait4``'s ``ru_maxrss``). A point's world is kept in ``--work`` and reused when its
configuration is unchanged (``world.json``), so a later run measures the pipelines only.

``python -m rankswap_dev.bench_pipelines [--work DIR] [--points 0.2M,1M,3M,10M]
[--steps features,train]`` (datagen runs when the point's world is not there yet)
(``make bench-pipelines``); prints one markdown table (docs/BENCHMARKS.md, "Pipelines at scale").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SCALE = "2"
AS_OF = "2026-07-01"
POINTS = {"0.2M": 24, "1M": 175, "3M": 545, "10M": 1840}
"""Point name -> tenants (at ``--scale 2``)."""


@dataclass(frozen=True, slots=True)
class Run:
    wall_s: float
    peak_mb: float
    load: tuple[float, float, float]


def run(args: list[str], log: Path) -> Run:
    """One ``rankswap`` command in its own process: wall time, its peak RSS, load average after."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rankswap.cli", *args], stdout=out, stderr=out
        )
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed ({proc.returncode}); see {log}")
    return Run(wall, usage.ru_maxrss / 1024, os.getloadavg())


def world(work: Path, name: str, tenants: int) -> tuple[str, int, Run | None]:
    """The point's product DB (generated unless ``world.json`` says it is there), its expenses."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'product.db'}"
    want = {"tenants": tenants, "scale": SCALE}
    marker = folder / "world.json"
    if marker.exists():
        have = json.loads(marker.read_text())
        if {k: have.get(k) for k in want} == want:
            return url, int(have["expenses"]), None
    r = run(
        ["datagen", "--db", url, "--tenants", str(tenants), "--scale", SCALE],
        folder / "datagen.log",
    )
    counts = re.search(r"expenses=(\d+)", (folder / "datagen.log").read_text())
    if counts is None:
        raise SystemExit(f"datagen printed no counts; see {folder / 'datagen.log'}")
    expenses = int(counts.group(1))
    marker.write_text(json.dumps({**want, "expenses": expenses}))
    return url, expenses, r


def _row(point: str, expenses: int, step: str, r: Run) -> str:
    """The step's table row, printed at once (a long run that stops later keeps it)."""
    row = (
        f"| {point} | {expenses:,} | {step} | {r.wall_s:,.1f} | {r.peak_mb:,.0f} | "
        f"{expenses / r.wall_s:,.0f} | {r.load[0]:.1f} |"
    )
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("work/bench-pipelines"))
    ap.add_argument(
        "--points", default=",".join(POINTS), help="comma-separated: " + ",".join(POINTS)
    )
    ap.add_argument(
        "--steps", default="features,train", help="comma-separated: features, train (or none)"
    )
    args = ap.parse_args(argv)
    work = args.work.resolve()
    steps_wanted = set(args.steps.split(",")) - {"", "none"}
    if not steps_wanted <= {"features", "train"}:
        raise SystemExit(f"unknown steps {args.steps!r}: features, train")
    rows = []
    for name in args.points.split(","):
        if name not in POINTS:
            raise SystemExit(f"unknown point {name!r}: one of {', '.join(POINTS)}")
        url, n, gen = world(work, name, POINTS[name])
        store = (work / name / "store").as_uri()
        if gen is not None:
            rows.append(_row(name, n, "datagen", gen))
        if "features" in steps_wanted:
            r = run(
                ["features", "build", "--db", url, "--as-of", AS_OF, "--store", store, "--force"],
                work / name / "features.log",
            )
            rows.append(_row(name, n, "features build", r))
        if "train" in steps_wanted:
            r = run(
                [
                    "model",
                    "train",
                    "--db",
                    url,
                    "--as-of",
                    AS_OF,
                    "--store",
                    store,
                    "--force",
                    "--no-ablation",
                ],
                work / name / "train.log",
            )
            rows.append(_row(name, n, "model train", r))
    print()
    print("| point | expenses | step | wall s | peak RSS MB | expenses/s | load (1 min) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
