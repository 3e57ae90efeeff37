"""``python -m rankswap_dev.bench_ranker.ab``: in-process ``rank()`` of two source trees side by
side, interleaved in one run (only the ratio means anything on a shared machine).

Each side is a source tree (e.g. an export of main, ``git archive main | tar -x -C DIR``, and
this worktree) with its own artifact store (features and model built by that tree's own
``rankswap features build`` / ``model train`` on the same product DB). One worker process per
side imports that tree's ``rankswap`` / ``rankswap_ranker`` (``PYTHONPATH``), loads the
store's latest model and features like the ranker does, and calls ``ranking.rank`` on the same
request bodies (the tenant's latest expenses, as the ``real`` section builds them). The parent
runs rounds: per round and tenant, every side does ``--calls`` calls, the side that goes first
alternating between rounds; the report gives per side the median over rounds of each round's
median (``rank()`` as the calling thread's CPU time — ONNX Runtime runs in it, one intra-op
thread — and as wall time, and its ``features`` / ``model`` stages, wall) and the median of the
per-round ratios against the first side. CPU time is the steadier figure on a loaded machine.

``--gap-ms 0,5`` repeats the rounds with a pause (``time.sleep``) before each ``rank()`` call,
the call itself timed as without one: a worker serving 150-200 req/s sees ~5 ms between
requests, and on this VM what a call costs depends on that (caches and the predictor's state go
cold; busy-waiting instead of sleeping costs about the same). Within a round every gap runs, in
the order given, so the gaps share the machine's moments like the sides do.

    python -m rankswap_dev.bench_ranker.ab --db sqlite:///w/demo.db \\
        --side main=/tmp/main:file:///w/store-main --side branch=.:file:///w/store-demo \\
        --gap-ms 0,5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import IO, Any

from rankswap_dev.bench_ranker import options, real

PACKAGES = ("core", "ranker", "training", "operator")
"""Folders of a source tree that hold its importable packages."""

WORKER = r"""
import json, sys, time
from datetime import date
from pathlib import Path
from rankswap import featurespec as fs
from rankswap.artifacts import artifact_uri
from rankswap_ranker import bundle as bundles
from rankswap_ranker.candidates import LazyProductDB
from rankswap_ranker.ranking import RankQuery, rank

store, db_url, cache, bodies_path = sys.argv[1:5]
model_uri = artifact_uri(store, "model", "line-items", "latest")
features_uri = artifact_uri(store, "features", fs.FEATURE_SCHEMA_VERSION, "latest")
bundle = bundles.load(bundles.resolve(model_uri, features_uri, Path(cache)), prefault=True)
source = LazyProductDB(db_url)
queries = {}
for tenant, bodies in json.loads(Path(bodies_path).read_text()).items():
    queries[tenant] = [
        RankQuery(
            tenant_id=tenant,
            employee_id=b["context"]["employee_id"],
            vendor_id=b["context"]["vendor_id"],
            description=b["context"]["description"],
            amount=b["context"]["amount"],
            expense_date=date.fromisoformat(b["context"]["date"]),
            top_k=b["top_k"],
        )
        for b in bodies
    ]
for qs in queries.values():
    for q in qs[:20]:
        rank(bundle, source, q)  # warm-up: caches, memos, the model session
print(json.dumps({"schema": fs.FEATURE_SCHEMA_VERSION, "model": bundle.ref.model.version,
                  "features": bundle.ref.features.version}), flush=True)
for line in sys.stdin:
    tenant, start, calls, gap_ms = line.split()
    qs, gap = queries[tenant], float(gap_ms) / 1000
    total, cpu, stages = [], [], {"features": [], "model": []}
    for i in range(int(start), int(start) + int(calls)):
        if gap:
            time.sleep(gap)
        c0, t0 = time.thread_time(), time.perf_counter()
        out = rank(bundle, source, qs[i % len(qs)])
        total.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        for k in stages:
            stages[k].append(out.timings[k])
    print(json.dumps({"total": total, "cpu": cpu, **stages, "candidates": out.candidates}),
          flush=True)
source.close()
"""


class Side:
    """One worker process: a source tree's code on its artifact store."""

    def __init__(self, name: str, tree: Path, store: str, db_url: str, work: Path, bodies: Path):
        self.name = name
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(str(tree.resolve() / p) for p in PACKAGES)
        cache = work / f"cache-{name}"
        cache.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, store, db_url, str(cache), str(bodies)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=work,
        )
        self.info: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        out: IO[str] | None = self.proc.stdout
        line = out.readline() if out is not None else ""
        if not line:
            raise RuntimeError(f"side {self.name}: worker exited ({self.proc.wait()})")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def run(self, tenant: str, start: int, calls: int, gap_ms: float = 0.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{tenant} {start} {calls} {gap_ms!r}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _pick(sizes: dict[str, int], targets: list[int]) -> list[str]:
    live = {t: n for t, n in sizes.items() if n > 0}
    return [min(live, key=lambda t: (abs(live[t] - target), t)) for target in targets]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", required=True, help="product DB URL (the same for every side)")
    p.add_argument(
        "--side",
        action="append",
        required=True,
        help="NAME=TREE:STORE_URI (repeat; the first is the reference of the ratios)",
    )
    p.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 7, 1))
    p.add_argument("--candidates", default="800,200", help="tenants closest to these sizes")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=100, help="rank() calls per side, round, tenant")
    p.add_argument(
        "--gap-ms",
        type=options.gaps_ms,
        default="0",
        help="pauses before each rank() call, ms, comma-separated: each gap is reported apart "
        "(default 0)",
    )
    p.add_argument("--json", type=Path, help="write the raw round medians here")
    args = p.parse_args(argv)
    sizes = real.tenant_sizes(args.db)
    tenants = _pick(sizes, [int(x) for x in args.candidates.split(",")])
    with tempfile.TemporaryDirectory(prefix="rankswap-ab-") as tmp:
        work = Path(tmp)
        bodies = work / "bodies.json"
        bodies.write_text(
            json.dumps(
                {
                    t: real.rank_bodies(args.db, t, args.as_of, real.REQUESTS_PER_TENANT)
                    for t in tenants
                }
            )
        )
        sides: list[Side] = []
        try:
            for spec in args.side:
                name, _, rest = spec.partition("=")
                tree, _, store = rest.partition(":")
                sides.append(Side(name, Path(tree), store, args.db, work, bodies))
            rounds = _rounds(sides, tenants, args.rounds, args.calls, args.gap_ms)
        finally:
            for side in sides:
                side.close()
    load = os.getloadavg()
    print(_report(sides, tenants, sizes, rounds, args, load))
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "load": load}, indent=1))
    return 0


Rounds = dict[str, dict[str, dict[str, list[dict[str, float]]]]]
"""{gap ms (as text): {tenant: {side: [per round: median ms of total / cpu / features / model]}}}"""


def gap_key(gap_ms: float) -> str:
    return f"{gap_ms:g}"


def _rounds(
    sides: list[Side], tenants: list[str], rounds: int, calls: int, gaps: list[float]
) -> Rounds:
    out: Rounds = {gap_key(g): {t: {s.name: [] for s in sides} for t in tenants} for g in gaps}
    for r in range(rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        for gap in gaps:
            for tenant in tenants:
                for side in order:
                    doc = side.run(tenant, r * calls, calls, gap)
                    out[gap_key(gap)][tenant][side.name].append(
                        {
                            k: statistics.median(doc[k]) * 1000
                            for k in ("total", "cpu", "features", "model")
                        }
                        | {"candidates": float(doc["candidates"])}
                    )
        print(f"# round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return out


def _report(
    sides: list[Side],
    tenants: list[str],
    sizes: dict[str, int],
    rounds: Rounds,
    args: argparse.Namespace,
    load: tuple[float, float, float],
) -> str:
    lines = [
        f"In-process `rank()` (ms), {args.rounds} interleaved rounds x {args.calls} calls per "
        f"side, tenant and gap, medians over rounds of the round medians; *gap* = sleep before "
        f"each call (not timed); load average {load[0]:.1f} at the end.",
        "",
        *(
            f"* {s.name}: feature schema {s.info['schema']}, model {s.info['model']}, "
            f"features {s.info['features']}"
            for s in sides
        ),
        "",
        *report_table([s.name for s in sides], tenants, sizes, rounds),
    ]
    return "\n".join(lines)


def report_table(
    sides: list[str], tenants: list[str], sizes: dict[str, int], rounds: Rounds
) -> list[str]:
    """One row per gap, tenant and side: medians over the rounds, and the medians of the
    per-round ratios against the first side (same gap) and against the same side without a
    gap (same round; when gap 0 was measured)."""
    ref = sides[0]
    lines = [
        "| gap ms | tenant (candidates) | side | rank() CPU | rank() wall | features | model "
        f"| rank() CPU / {ref} | rank() wall / {ref} | features / {ref} | rank() CPU / gap 0 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for gap, by_tenant in rounds.items():
        for t in tenants:
            base = by_tenant[t][ref]
            for s in sides:
                mine = by_tenant[t][s]
                no_gap = rounds.get(gap_key(0.0), {}).get(t, {}).get(s)

                def med(k: str, rows: list[dict[str, float]] = mine) -> float:
                    return statistics.median(r[k] for r in rows)

                def ratio(
                    k: str, rows: list[dict[str, float]], ref_rows: list[dict[str, float]]
                ) -> float:
                    return statistics.median(
                        a[k] / b[k] for a, b in zip(rows, ref_rows, strict=True)
                    )

                vs_gap0 = f"{ratio('cpu', mine, no_gap):.2f}x" if no_gap else "-"
                lines.append(
                    f"| {gap} | {t} ({sizes[t]}) | {s} | {med('cpu'):.3f} | {med('total'):.3f} "
                    f"| {med('features'):.3f} | {med('model'):.3f} "
                    f"| {ratio('cpu', mine, base):.2f}x | {ratio('total', mine, base):.2f}x "
                    f"| {ratio('features', mine, base):.2f}x | {vs_gap0} |"
                )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
