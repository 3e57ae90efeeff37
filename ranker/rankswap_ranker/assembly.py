"""Which arithmetic assembles a bundle's model inputs: the compiled kernels
(``featurespec.compiled_fill``) when they give, on requests built from the bundle's own tables,
the same bits as the numpy reference (``featurespec.fill_numpy``); the reference otherwise.

The kernels are code, tested bit for bit on generated worlds; this check runs them once more on
every bundle before it serves, as the compiled trees are checked against the ONNX graph
(``bundle.parity_checked_native``): a compiler, CPU or library difference on this machine shows
up as a logged fallback to numpy, never as a different model input.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from rankswap import featurespec as fs

log = logging.getLogger("rankswap.ranker.assembly")

PARITY_ITEMS: Final = 300
"""Candidates of the parity requests: items of the tables' ``item`` table, plus unseen ones."""
PARITY_REQUESTS: Final = 24
"""Contexts of the parity check: ~0.08 s for both fills on 300 candidates."""


def parity_requests(
    tables: fs.FeatureTables, *, seed: int = 14
) -> tuple[fs.Candidates, list[fs.RankContext]]:
    """A candidate list and contexts drawn from ``tables`` (fixed seed): items of the item table
    (and a few unseen ones) named with vocabulary terms, employees and vendors of the pair
    tables (and unknown ones), descriptions of vocabulary terms, dates around the tables' days,
    amounts from 0 to 10^6, so that every feature's arithmetic runs, defaults included."""
    rng = np.random.default_rng(seed)
    t = tables.tables
    known = np.unique(np.asarray(t["item"].keys, dtype=np.int64))
    known = known[(known >= 0) & (known < 2**31 - 64)]
    take = rng.permutation(known)[: PARITY_ITEMS - 8]
    item_ids = np.unique(np.concatenate([take, 2**31 - 1 - np.arange(8, dtype=np.int64)]))
    n = item_ids.shape[0]
    vocab = list(tables.term_index())
    words = [w for w in vocab if w and not w.startswith("\x01")] or ["smoke"]

    def pick(k: int) -> str:
        return " ".join(words[int(i)] for i in rng.integers(0, len(words), k))

    cat_keys = np.asarray(t["category"].keys, dtype=np.int64)
    cat_keys = cat_keys[(cat_keys >= 0) & (cat_keys < 2**31)]
    cats = np.zeros(n, dtype=np.int64)
    if cat_keys.shape[0]:
        cats = cat_keys[rng.integers(0, cat_keys.shape[0], n)]
    cats[rng.random(n) < 0.05] = 2**31 - 2  # a category the tables do not hold
    candidates = fs.Candidates(
        item_ids=item_ids,
        codes=_strings([f"C-{int(i) % 1000:03d}" for i in item_ids]),
        names=_strings([f"{pick(int(rng.integers(1, 4)))} PJ-{int(i) % 97:04d}" for i in item_ids]),
        category_ids=cats,
        categories=_strings([f"category-{int(c)}" for c in cats]),
        account_codes=_strings([f"{int(c) % 7}" for c in cats]),
        created_at=np.datetime64("2020-01-01T00:00:00", "s")
        + rng.integers(0, 3000 * 86400, n).astype("timedelta64[s]"),
    )
    employees = [*_high_keys(t["emp_item"].keys, rng), None, 2**31 - 3]
    vendors = [*_high_keys(t["vendor_item"].keys, rng), None, 2**31 - 3]
    industries = [w[3:] for w in vocab if w.startswith(fs.industry_term(""))]
    departments = [w[3:] for w in vocab if w.startswith(fs.department_term(""))]
    days = np.asarray(t["item"].columns["last_day"], dtype=np.float64)
    days = days[np.isfinite(days) & (days > 0) & (days < 60_000)]
    latest = int(days.max()) if days.shape[0] else 20_000
    contexts = []
    for k in range(PARITY_REQUESTS):
        names = [str(x) for x in candidates.names[rng.integers(0, n, 2)].tolist()]
        description = pick(int(rng.integers(0, 6))) if k % 3 else " ".join(names)
        contexts.append(
            fs.RankContext(
                tenant_id="__parity__",
                employee_id=employees[k % len(employees)],
                vendor_id=vendors[k % len(vendors)],
                description=description,
                amount=float(rng.choice([0.0, 1.0, 999.5, 1e6, float(rng.integers(1, 50_000))])),
                expense_date=date(1970, 1, 1)
                + timedelta(days=latest + int(rng.integers(-400, 30))),
                employee_department=departments[k % len(departments)] if departments else "",
                vendor_industry=industries[k % len(industries)] if industries else "",
                vendor_name=names[0] if k % 4 == 0 else pick(1),
            )
        )
    return candidates, contexts


KERNEL_CACHE_SEED: Final = "RANKSWAP_KERNEL_CACHE_SEED"
"""A directory of compiled kernels (numba's cache, made at image build with ``NUMBA_CACHE_DIR``
pointing there) that :func:`kernel_cache` copies to the pod's cache directory."""


def kernel_cache(cache_dir: Path) -> Path | None:
    """Where numba caches the compiled kernels for this process and the workers it starts:
    ``NUMBA_CACHE_DIR`` when set; else, when ``RANKSWAP_KERNEL_CACHE_SEED`` names the image's
    compiled kernels, ``cache_dir/numba``, seeded once with a copy of them (the image's
    filesystem is read-only, and numba writes its cache where it reads it; a CPU other than
    the build machine's compiles once into the copy); else None: numba's default, next to the
    source (a checkout) or in the user's cache."""
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given:
        return Path(given)
    seed = os.environ.get(KERNEL_CACHE_SEED)
    if not seed:
        return None
    target = cache_dir / "numba"
    if not target.exists() and Path(seed).is_dir():
        partial = cache_dir / ".numba.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(seed, partial)
        os.replace(partial, target)
    os.environ["NUMBA_CACHE_DIR"] = str(target)
    return target


def parity_checked_fill(tables: fs.FeatureTables, label: str) -> fs.Fill:
    """The compiled fill if it assembles :func:`parity_requests` of ``tables`` exactly as the
    numpy reference does; else the reference (logged)."""
    t0 = time.perf_counter()
    try:
        fill = fs.compiled_fill()
    except fs.KernelsUnavailable as exc:
        log.info("%s: the feature assembly is not compiled (%s); numpy assembles", label, exc)
        return fs.fill_numpy
    ready_s = time.perf_counter() - t0
    try:
        candidates, contexts = parity_requests(tables)
        same = all(_same(ctx, candidates, tables, fill) for ctx in contexts)
    except Exception as exc:  # numba's own errors (a type it was not compiled for): numpy
        log.warning("%s: the compiled assembly failed (%s); numpy assembles", label, exc)
        return fs.fill_numpy
    if not same:
        log.warning(
            "%s: the compiled assembly does not give numpy's model input; numpy assembles", label
        )
        return fs.fill_numpy
    log.info(
        "%s: the compiled assembly gives numpy's model input (kernels ready in %.2f s, checked "
        "in %.2f s)",
        label,
        ready_s,
        time.perf_counter() - t0 - ready_s,
    )
    return fill


def _same(
    ctx: fs.RankContext, candidates: fs.Candidates, tables: fs.FeatureTables, fill: fs.Fill
) -> bool:
    want = fs.assemble(ctx, candidates, tables)
    got = fs.assemble_with(ctx, candidates, tables, fill)
    return (
        np.array_equal(want.num.view(np.uint32), got.num.view(np.uint32))
        and bool((want.cat == got.cat).all())
        and (want.rows, want.emp_item_default_rows, want.unknown_terms)
        == (got.rows, got.emp_item_default_rows, got.unknown_terms)
    )


def _high_keys(keys: npt.NDArray[np.int64], rng: np.random.Generator) -> list[int | None]:
    """A few distinct owners (high 32 bits) of a pair table's keys."""
    owners = np.unique(np.asarray(keys, dtype=np.int64) >> 32)
    picked = rng.permutation(owners)[:8] if owners.shape[0] else owners
    return [int(x) for x in picked]


def _strings(values: list[str]) -> npt.NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
