"""``python -m rankswap_dev.bench_ranker.fills``: the serving feature assembly's two
arithmetics side by side on the real world's bodies, in one process: numpy
(``featurespec.fill_numpy``, the reference) and the compiled kernels
(``featurespec.compiled_fill``, what a bundle serves with once it passed the check at load).
Bit-identity on every body first, then ``rank()``'s thread CPU and its features stage with each,
in a tight loop and with a gap before each call (interleaved rounds).

    python -m rankswap_dev.bench_ranker.fills --db sqlite:///w/product.db --store file:///w/store
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np

from rankswap import featurespec as fs


def main(argv: list[str] | None = None) -> int:  # pragma: no cover (a benchmark run)
    from rankswap.artifacts import artifact_uri
    from rankswap_dev.bench_ranker import real
    from rankswap_ranker import bundle as bundles
    from rankswap_ranker.candidates import LazyProductDB
    from rankswap_ranker.ranking import rank

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--cache", type=Path, default=Path("work/fills-cache"))
    p.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 7, 1))
    p.add_argument("--calls", type=int, default=400)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    ref = bundles.resolve(
        artifact_uri(args.store, "model", "line-items", "latest"),
        artifact_uri(args.store, "features", fs.FEATURE_SCHEMA_VERSION, "latest"),
        args.cache,
    )
    started = time.perf_counter()
    compiled = bundles.load(ref, prefault=True)
    load_s = time.perf_counter() - started
    if compiled.fill is fs.fill_numpy:
        raise SystemExit("the compiled kernels were not used (see the log): nothing to compare")
    sides = {"numpy": dataclasses.replace(compiled, fill=fs.fill_numpy), "kernels": compiled}
    source = LazyProductDB(args.db)
    sizes = real.tenant_sizes(args.db)
    tenants = [min(sizes, key=lambda t: (abs(sizes[t] - 800), t))]
    tenants.append(min(sizes, key=lambda t: (abs(sizes[t] - 200), t)))
    queries = {
        t: [
            real.body_query(t, b)
            for b in real.rank_bodies(args.db, t, args.as_of, real.REQUESTS_PER_TENANT)
        ]
        for t in tenants
    }
    same = total = 0
    for qs in queries.values():
        for q in qs:
            ctx, cands = source.rank_inputs(q.entered())
            want = sides["numpy"].assemble(ctx, cands)
            got = sides["kernels"].assemble(ctx, cands)
            total += 1
            same += int(np.array_equal(want.num.view(np.uint32), got.num.view(np.uint32)))
    print(
        f"bit-identical model inputs: {same} of {total} bodies "
        f"(bundle load with the kernels' compile or cache load and the check: {load_s:.1f} s)"
    )
    print("\n| gap ms | tenant (candidates) | fill | rank() CPU ms | features ms |")
    print("|---|---|---|---|---|")
    rows: dict[tuple[float, str, str], list[tuple[float, float]]] = {}
    for round_no in range(args.rounds):
        for gap in (0.0, 0.005):
            order = list(sides.items())
            for name, bundle in order if round_no % 2 == 0 else order[::-1]:
                for t, qs in queries.items():
                    for q in qs[:20]:
                        rank(bundle, source, q)
                    cpu, feat = [], []
                    for i in range(args.calls):
                        if gap:
                            time.sleep(gap)
                        c0 = time.thread_time()
                        out = rank(bundle, source, qs[i % len(qs)])
                        cpu.append(time.thread_time() - c0)
                        feat.append(out.timings["features"])
                    rows.setdefault((gap, t, name), []).append(
                        (statistics.median(cpu) * 1000, statistics.median(feat) * 1000)
                    )
    for (gap, t, name), medians in rows.items():
        cpu_ms = statistics.median(c for c, _ in medians)
        feat_ms = statistics.median(f for _, f in medians)
        print(f"| {gap * 1000:.0f} | {t} ({sizes[t]}) | {name} | {cpu_ms:.3f} | {feat_ms:.3f} |")
    source.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
