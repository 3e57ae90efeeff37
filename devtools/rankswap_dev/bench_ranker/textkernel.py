"""``python -m rankswap_dev.bench_ranker.textkernel``: the serving text features
(``featurespec.itemtext.one_context``) as one compiled kernel (numba), against the numpy code
that serves today, on the real world's bodies: bit-identity first, then ``rank()``'s thread CPU
and its features stage with each, in a tight loop and with a gap before each call.

A candidate lever of issue 14, measured before it is adopted (as the gbdt section measured a
compiled tree evaluator): the numpy path makes ~60 small calls per request, ~1-2.5 µs each on
this box, and each of them loses its caches between spaced requests; the kernel does the same
arithmetic in one call. It reproduces every step of the numpy path's float arithmetic and
order: the ``bincount`` sums in pair order, ``np.round(x, 4)`` as multiply / ``rint`` /
divide, and numpy's ``float32`` ``add.reduce`` of a 16-wide row (the first value plus the
pairwise sum of the rest). ``tests/unit/dev/test_bench_textkernel.py`` checks it bit for bit on
a generated world; ``main`` on the bench world's bodies. numba is a development dependency
only: the ranker does not import this module.

    python -m rankswap_dev.bench_ranker.textkernel --db sqlite:///w/product.db --store file:///w/store
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numba
import numpy as np
import numpy.typing as npt

from rankswap import featurespec as fs
from rankswap.featurespec import itemtext, serving
from rankswap.featurespec.schema import MAX_TERMS

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

OneContext = Callable[
    [int, str, fs.Candidates, fs.FeatureTables, list[str], tuple[I64, I64, F32], int, F32], None
]


@numba.njit(cache=True, nogil=True, inline="always")
def _round4(x: float) -> float:
    """``np.round(x, 4)``: numpy multiplies by 10**4, rounds half to even, divides."""
    return float(np.rint(x * 10000.0) / 10000.0)


@numba.njit(cache=True, nogil=True, inline="always")
def _row_sum_f32(a: F32) -> np.float32:
    """numpy's ``float32`` ``add.reduce`` of one contiguous row: its first value plus the
    pairwise sum of the rest (8 accumulators from 8 values on, then the tail in order)."""
    n = a.shape[0] - 1
    if n < 8:
        res = np.float32(0.0)
        for i in range(n):
            res += a[1 + i]
    else:
        r0, r1, r2, r3 = a[1], a[2], a[3], a[4]
        r4, r5, r6, r7 = a[5], a[6], a[7], a[8]
        i = 8
        while i < n - (n % 8):
            r0 += a[1 + i]
            r1 += a[2 + i]
            r2 += a[3 + i]
            r3 += a[4 + i]
            r4 += a[5 + i]
            r5 += a[6 + i]
            r6 += a[7 + i]
            r7 += a[8 + i]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[1 + i]
            i += 1
    return a[0] + res  # type: ignore[no-any-return]


@numba.njit(cache=True, nogil=True)
def kernel(
    out: F32,
    desc: I64,
    term_start: I64,
    by_term: I64,
    pair_row: I64,
    pair_term: I64,
    idf: npt.NDArray[np.float64],
    alone: npt.NDArray[np.float64],
    terms_den: F32,
    idf_total: npt.NDArray[np.float64],
    row_start: I64,
    emp_on: bool,
    emp_column: F32,
    emp_local: I64,
    emp_share: npt.NDArray[np.float64],
    vocab_size: int,
    hit_rows: I64,
    hit_cols: I64,
    hit_share: F32,
    n_known: int,
    mark: I64,
    rows: I64,
    block: F32,
) -> None:
    """``one_context``'s features 0-2 and 4-8 into ``out`` [N, 9] (feature 3, the vendor
    name's, is written by the caller). ``mark`` [N] (zeros, left zero), ``rows`` [N] and
    ``block`` [N, MAX_TERMS] are scratch."""
    n = out.shape[0]
    out[:, :] = 0.0
    # the pairs of the description's terms, in pair order (ascending)
    m = 0
    for t in desc:
        m += term_start[t + 1] - term_start[t]
    pairs = np.empty(m, np.int64)
    k = 0
    for t in desc:
        for p in range(term_start[t], term_start[t + 1]):
            pairs[k] = by_term[p]
            k += 1
    if desc.shape[0] > 1:
        pairs.sort()
    # per matched row (ascending): name_match_n, _share, name_idf_cover, name_alone_match
    matched = 0
    i = 0
    while i < m:
        r = pair_row[pairs[i]]
        count = 0.0
        idf_sum = 0.0
        alone_sum = 0.0
        while i < m and pair_row[pairs[i]] == r:
            count += 1.0
            idf_sum += idf[pairs[i]]
            alone_sum += alone[pairs[i]]
            i += 1
        out[r, 0] = count
        out[r, 1] = _round4(count / np.float64(terms_den[r]))
        cover = idf_sum / max(idf_total[r], 1e-12) if idf_total[r] > 0 else 0.0
        out[r, 2] = _round4(cover)
        out[r, 8] = alone_sum
        rows[matched] = r
        matched += 1
    if emp_on:  # emp_name_share; emp_name_rest again over the matched rows' pairs
        for r in range(n):
            out[r, 4] = emp_column[r]
            out[r, 5] = emp_column[r]
        if matched:
            per_term = np.zeros(vocab_size, np.float64)
            for j in range(emp_local.shape[0]):
                per_term[emp_local[j]] = emp_share[j]
            keep = np.ones(vocab_size, np.float64)
            for t in desc:
                keep[t] = 0.0
            for a in range(matched):
                r = rows[a]
                rest = 0.0
                den = 0.0
                for q in range(row_start[r], row_start[r + 1]):
                    tq = pair_term[q]
                    rest += idf[q] * per_term[tq] * keep[tq]
                    den += idf[q] * keep[tq]
                out[r, 5] = _round4(rest / max(den, 1e-12)) if den > 0 else 0.0
    h = hit_rows.shape[0]
    if h:  # desc_item_mean / _max over the rows with a term_item row (ascending)
        for j in range(h):
            mark[hit_rows[j]] = 1
        hit = 0
        for r in range(n):
            if mark[r]:
                hit += 1
                mark[r] = hit
                rows[hit - 1] = r
        b = block[:hit]
        b[:, :] = 0.0
        for j in range(h):
            b[mark[hit_rows[j]] - 1, hit_cols[j]] = hit_share[j]
        for a in range(hit):
            r = rows[a]
            out[r, 6] = _round4(np.float64(_row_sum_f32(b[a])) / np.float64(n_known))
            top = b[a, 0]
            for c in range(1, b.shape[1]):
                top = max(top, b[a, c])
            out[r, 7] = top
            mark[r] = 0


_SCRATCH: dict[int, tuple[I64, I64, F32]] = {}


def one_context(
    employee: int,
    vendor_name: str,
    candidates: fs.Candidates,
    tables: fs.FeatureTables,
    desc_terms: list[str],
    term_item: tuple[I64, I64, F32],
    n_known: int,
    out: F32,
) -> None:
    """``itemtext.one_context`` (same arguments, same values) through :func:`kernel`; the
    memoised parts (name index, employee and vendor parts) as there. Scratch per list size:
    one thread only (a benchmark)."""
    index = itemtext.NameIndex.of(candidates)
    names = index.names
    n = len(candidates)
    scratch = _SCRATCH.get(n)
    if scratch is None:
        scratch = _SCRATCH[n] = (
            np.zeros(n, np.int64),
            np.empty(n, np.int64),
            np.empty((n, MAX_TERMS), np.float32),
        )
    emp = itemtext.EmployeeNames.of(employee, tables, index, candidates)
    none_i, none_f = np.empty(0, np.int64), np.empty(0, np.float64)
    hit_rows, hit_cols, hit_share = term_item
    kernel(
        out,
        itemtext._local_terms(desc_terms, names.vocab),
        index.term_start,
        index.by_term,
        names.row,
        names.term,
        index.idf,
        index.alone,
        index.terms_den,
        index.idf_total,
        index.row_start,
        emp is not None,
        emp.share_column if emp is not None else np.empty(0, np.float32),
        emp.local if emp is not None else none_i,
        emp.share if emp is not None else none_f,
        len(names.vocab),
        hit_rows,
        hit_cols.astype(np.int64, copy=False),
        hit_share,
        n_known,
        *scratch,
    )
    vendor = itemtext.VendorNames.of(vendor_name, index, candidates)
    if vendor is not None:
        out[vendor.rows, 3] = vendor.cover


def with_text_path(path: OneContext) -> Callable[[], None]:
    """Serve the text features through ``path`` (``serving`` calls it by name); the returned
    callable puts back the numpy path."""
    setattr(serving, "one_context", path)  # noqa: B010 (a module global, patched by name)

    def restore() -> None:
        setattr(serving, "one_context", itemtext.one_context)  # noqa: B010

    return restore


def main(argv: list[str] | None = None) -> int:  # pragma: no cover (a benchmark run)
    from rankswap.artifacts import artifact_uri
    from rankswap_dev.bench_ranker import real
    from rankswap_ranker import bundle as bundles
    from rankswap_ranker.candidates import LazyProductDB
    from rankswap_ranker.ranking import RankQuery, rank

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--cache", type=Path, default=Path("work/textkernel-cache"))
    p.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 7, 1))
    p.add_argument("--calls", type=int, default=400)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    ref = bundles.resolve(
        artifact_uri(args.store, "model", "line-items", "latest"),
        artifact_uri(args.store, "features", fs.FEATURE_SCHEMA_VERSION, "latest"),
        args.cache,
    )
    bundle = bundles.load(ref, prefault=True)
    source = LazyProductDB(args.db)
    sizes = real.tenant_sizes(args.db)
    tenants = [min(sizes, key=lambda t: (abs(sizes[t] - 800), t))]
    tenants.append(min(sizes, key=lambda t: (abs(sizes[t] - 200), t)))
    queries = {
        t: [
            RankQuery(
                tenant_id=t,
                employee_id=b["context"]["employee_id"],
                vendor_id=b["context"]["vendor_id"],
                description=b["context"]["description"],
                amount=b["context"]["amount"],
                expense_date=date.fromisoformat(b["context"]["date"]),
                top_k=b["top_k"],
            )
            for b in real.rank_bodies(args.db, t, args.as_of, real.REQUESTS_PER_TENANT)
        ]
        for t in tenants
    }
    started = time.perf_counter()
    same = total = 0
    for qs in queries.values():
        for q in qs:
            ctx, cands = source.rank_inputs(q.entered())
            want = fs.assemble(ctx, cands, bundle.tables).num
            restore = with_text_path(one_context)
            got = fs.assemble(ctx, cands, bundle.tables).num
            restore()
            total += 1
            same += int(np.array_equal(want.view(np.uint32), got.view(np.uint32)))
    print(
        f"bit-identical model inputs: {same} of {total} bodies "
        f"(first pass, with the kernel's compile or cache load: {time.perf_counter() - started:.1f} s)"
    )
    print("\n| gap ms | tenant (candidates) | text path | rank() CPU ms | features ms |")
    print("|---|---|---|---|---|")
    rows: dict[tuple[float, str, str], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for gap in (0.0, 0.005):
            for name, path in (("numpy", itemtext.one_context), ("kernel", one_context)):
                restore = with_text_path(path)
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
                restore()
    for (gap, t, name), medians in rows.items():
        cpu_ms = statistics.median(c for c, _ in medians)
        feat_ms = statistics.median(f for _, f in medians)
        print(f"| {gap * 1000:.0f} | {t} ({sizes[t]}) | {name} | {cpu_ms:.3f} | {feat_ms:.3f} |")
    source.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
