"""The serving arithmetic (``serving.fill_numpy``) as two compiled kernels (numba): the same bits
in two calls where the numpy path makes ~90 small ones, each of which costs 1-2.5 µs and loses
its caches between spaced requests.

:func:`fill` is a ``serving.Fill``: :func:`numeric` writes every feature but the text ones (the
dates, the amount's z-scores, the employee's and vendor's pair-table rows, the category block
with its term shares), :func:`text` the nine item-text features (``itemtext.one_context``). The
memoised parts (``serving.ExpenseParts``: the candidate list's template, the employee's and
vendor's rows; ``itemtext``'s name index, employee and vendor parts) are looked up as before,
in Python; the known terms' ``term_cat`` / ``term_item`` rows are searched in the tables by the
kernels themselves (``serving.TermRows`` is the numpy path's).

Every step reproduces numpy's float arithmetic and order: float32 where numpy computes in
float32 (``np.subtract`` / ``np.divide`` of float32 arrays and scalars), the ``clip`` ufunc's
``min(max(x, lo), hi)`` with NaN kept, the ``bincount`` sums in pair order in float64,
``round(x, 4)`` as multiply / ``rint`` / divide, and numpy's float32 ``add.reduce`` of a
16-wide row (the identity plus the row's pairwise sum). Tests check bit-identity on
generated worlds (``tests/unit/core/test_kernels.py``); the ranker checks it again on every
bundle it loads before it serves with them (``rankswap_ranker.assembly``).

The kernels are compiled when this module is imported, for one signature each: every array
argument is typed ``A`` (any layout) and read-only where the kernel only reads it, so any array
of the right dtype and rank matches and no call ever compiles (a wrong dtype raises
``TypeError``). The machine code is cached on disk (numba's ``cache=True``: next to this file, or
under ``NUMBA_CACHE_DIR``): a fresh compile takes seconds, a cached load well under one. Import
it through ``serving.compiled_fill``, which turns any failure into ``KernelsUnavailable``.
"""

from __future__ import annotations

from typing import Final

import numba
import numpy as np
from numba import types

from .itemtext import F64, EmployeeNames, NameIndex, VendorNames, _local_terms
from .schema import (
    C_CAT,
    C_CTX,
    C_EMP_ITEM,
    C_ITEM,
    C_ITEM_AGE,
    C_LOG_AMOUNT,
    C_TEXT,
    C_VENDOR_ITEM,
    DAYS_NEVER,
    F32,
    I64,
    MAX_TERMS,
)
from .serving import ExpenseParts

_F32_0: Final = np.float32(0.0)
_F32_NEVER: Final = np.float32(DAYS_NEVER)
_F32_10: Final = np.float32(10.0)
_LOW32: Final = np.int64(0xFFFFFFFF)


def _array(dtype: types.Type, ndim: int, *, readonly: bool = True) -> types.Array:
    return types.Array(dtype, ndim, "A", readonly=readonly)


_ri64 = _array(types.int64, 1)
_rf32 = _array(types.float32, 1)
_rf64 = _array(types.float64, 1)
_rf32_2 = _array(types.float32, 2)
_wf32_2 = _array(types.float32, 2, readonly=False)


@numba.njit(cache=True, nogil=True, inline="always")
def _clip(x: np.float32, lo: np.float32, hi: np.float32) -> np.float32:
    """The ``clip`` ufunc on one value: ``min(max(x, lo), hi)``, NaN kept."""
    if np.isnan(x):
        return x
    y = x if x > lo else lo
    return y if y < hi else hi


@numba.njit(cache=True, nogil=True, inline="always")
def _round4(x: float) -> float:
    """``np.round(x, 4)``: numpy multiplies by 10**4, rounds half to even, divides."""
    return float(np.rint(x * 10000.0) / 10000.0)


@numba.njit(cache=True, nogil=True, inline="always")
def _row_sum(a: F32) -> np.float32:
    """numpy's float32 ``add.reduce`` of one contiguous row of a 2-d ``sum(axis=1)``: the identity
    0 plus the pairwise sum of the row (below 8 values in order; else 8 accumulators, their tree,
    then the tail in order)."""
    n = a.shape[0]
    if n < 8:
        res = np.float32(0.0)
        for i in range(n):
            res += a[i]
    else:
        r0, r1, r2, r3 = a[0], a[1], a[2], a[3]
        r4, r5, r6, r7 = a[4], a[5], a[6], a[7]
        i = 8
        while i < n - (n % 8):
            r0 += a[i]
            r1 += a[i + 1]
            r2 += a[i + 2]
            r3 += a[i + 3]
            r4 += a[i + 4]
            r5 += a[i + 5]
            r6 += a[i + 6]
            r7 += a[i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[i]
            i += 1
    return np.float32(0.0) + res


@numba.njit(cache=True, nogil=True, inline="always")
def _row_max(a: F32) -> np.float32:
    """``max`` of one row, NaN if any value is (numpy's ``maximum.reduce``)."""
    top = a[0]
    for c in range(1, a.shape[0]):
        v = a[c]
        if np.isnan(top):
            break
        if np.isnan(v) or v > top:
            top = v
    return top  # type: ignore[no-any-return]


@numba.njit(cache=True, nogil=True, inline="always")
def _key_range(keys: I64, high: int) -> tuple[int, int]:
    """``Table.key_range``: the rows ``[lo, hi)`` whose keys have the high 32 bits ``high``."""
    if high < 0 or keys.shape[0] == 0:
        return 0, 0
    base = np.int64(high) << 32
    lo = np.searchsorted(keys, base - 1, side="right")
    hi = np.searchsorted(keys, base | _LOW32, side="right")
    return int(lo), int(hi)


@numba.njit(cache=True, nogil=True, inline="always")
def _position(sorted_low: I64, low: int) -> int:
    """Where ``low`` is in ``sorted_low`` (sorted, unique), or -1 (``serving._matching``)."""
    n = sorted_low.shape[0]
    if n == 0:
        return -1
    p = min(np.searchsorted(sorted_low, low), n - 1)
    return p if sorted_low[p] == low else -1


@numba.njit(
    types.void(
        _wf32_2,  # num [N, F]
        types.float32,  # day
        types.float32,  # log amount
        _rf32,  # created_days
        _rf32,  # item_last
        _rf32,  # item_amt_mean
        _rf32,  # item_amt_den
        _ri64,  # item_missing
        _ri64,  # staff rows
        _rf32_2,  # staff values [columns, hits]
        _ri64,  # staff category positions
        _rf32_2,  # staff category values
        types.float32,  # staff count
        _ri64,  # seller rows
        _rf32_2,
        _ri64,
        _rf32_2,
        types.float32,
        _rf32_2,  # category block template [U, 8]
        _rf32,  # cat_amt_mean
        _rf32,  # cat_amt_den
        _ri64,  # cat_missing
        _ri64,  # cat_of_row
        _ri64,  # the distinct categories, sorted (ServingBase.u_cat)
        _ri64,  # term columns (one per known term)
        _ri64,  # term ids
        _ri64,  # term_cat keys
        _rf32,  # term_cat shares
        types.int64,  # known description terms
    ),
    cache=True,
    nogil=True,
)
def numeric(
    num: F32,
    day: np.float32,
    la: np.float32,
    created_days: F32,
    item_last: F32,
    item_amt_mean: F32,
    item_amt_den: F32,
    item_missing: I64,
    staff_rows: I64,
    staff_values: F32,
    staff_cat_pos: I64,
    staff_cat_values: F32,
    staff_count: np.float32,
    seller_rows: I64,
    seller_values: F32,
    seller_cat_pos: I64,
    seller_cat_values: F32,
    seller_count: np.float32,
    cat_template: F32,
    cat_amt_mean: F32,
    cat_amt_den: F32,
    cat_missing: I64,
    cat_of_row: I64,
    u_cat: I64,
    term_col: I64,
    term_id: I64,
    term_cat_keys: I64,
    term_cat_share: F32,
    n_known: int,
) -> None:
    """``fill_numpy``'s numeric part: every column but the text features'. The known terms'
    ``term_cat`` rows among the candidates' categories are searched here (``TermRows``)."""
    n = num.shape[0]
    for r in range(n):
        num[r, C_LOG_AMOUNT] = la
        num[r, C_ITEM_AGE] = _clip(day - created_days[r], _F32_0, _F32_NEVER)
        num[r, C_ITEM + 5] = _clip(day - item_last[r], _F32_0, _F32_NEVER)
        num[r, C_ITEM + 6] = _clip((la - item_amt_mean[r]) / item_amt_den[r], -_F32_10, _F32_10)
        num[r, C_CTX] = staff_count
        num[r, C_CTX + 1] = seller_count
    for r in item_missing:
        num[r, C_ITEM + 6] = 0.0
    block = cat_template.copy()
    for rows, values, cat_pos, cat_values, col, j in (
        (staff_rows, staff_values, staff_cat_pos, staff_cat_values, C_EMP_ITEM, 0),
        (seller_rows, seller_values, seller_cat_pos, seller_cat_values, C_VENDOR_ITEM, 1),
    ):
        for h in range(rows.shape[0]):
            r = rows[h]
            for c in range(values.shape[0]):
                v = values[c, h]
                num[r, col + c] = _clip(day - v, _F32_0, _F32_NEVER) if c == 2 else v
        for h in range(cat_pos.shape[0]):
            block[cat_pos[h], j] = cat_values[0, h]
    u = block.shape[0]
    for k in range(u):
        z = _clip((la - cat_amt_mean[k]) / cat_amt_den[k], -_F32_10, _F32_10)
        block[k, 3] = z
    for k in cat_missing:
        block[k, 3] = 0.0
    if term_col.shape[0]:  # serving._term_cat
        desc = np.zeros((u, MAX_TERMS), np.float32)
        for t in range(term_col.shape[0]):
            j = term_col[t]
            lo, hi = _key_range(term_cat_keys, term_id[t])
            for p in range(lo, hi):
                k = _position(u_cat, term_cat_keys[p] & _LOW32)
                if k < 0:
                    continue
                if j < MAX_TERMS:
                    desc[k, j] = term_cat_share[p]
                else:  # industry, department: straight into the block
                    block[k, 6 + j - MAX_TERMS] = term_cat_share[p]
        for k in range(u):
            if n_known > 0:
                block[k, 4] = np.float64(_row_sum(desc[k])) / np.float64(n_known)
            block[k, 5] = _row_max(desc[k])
    for c in range(8):
        for r in range(n):
            num[r, C_CAT + c] = block[cat_of_row[r], c]


@numba.njit(
    types.void(
        _wf32_2,  # out [N, 9]
        _ri64,  # the description's local terms
        _ri64,  # NameIndex.term_start
        _ri64,  # NameIndex.by_term
        _ri64,  # NameTerms.row
        _ri64,  # NameTerms.term
        _rf64,  # idf
        _rf64,  # alone
        _rf32,  # terms_den
        _rf64,  # idf_total
        _ri64,  # row_start
        types.boolean,  # the employee has name-term rows
        _rf32,  # EmployeeNames.share_column
        _ri64,  # EmployeeNames.local
        _rf64,  # EmployeeNames.share
        types.int64,  # vocabulary size
        _ri64,  # VendorNames.rows
        _rf32,  # VendorNames.cover
        _ri64,  # term columns (one per known term)
        _ri64,  # term ids
        _ri64,  # term_item keys
        _rf32,  # term_item shares
        _ri64,  # the candidates' item ids, sorted (ServingBase.sorted_ids)
        _ri64,  # their rows (ServingBase.id_order)
        types.int64,  # known description terms
    ),
    cache=True,
    nogil=True,
)
def text(
    out: F32,
    desc: I64,
    term_start: I64,
    by_term: I64,
    pair_row: I64,
    pair_term: I64,
    idf: F64,
    alone: F64,
    terms_den: F32,
    idf_total: F64,
    row_start: I64,
    emp_on: bool,
    emp_column: F32,
    emp_local: I64,
    emp_share: F64,
    vocab_size: int,
    vendor_rows: I64,
    vendor_cover: F32,
    term_col: I64,
    term_id: I64,
    term_item_keys: I64,
    term_item_share: F32,
    sorted_ids: I64,
    id_order: I64,
    n_known: int,
) -> None:
    """``itemtext.one_context``: the nine text features into ``out`` [N, 9]. The description
    terms' ``term_item`` rows among the candidates are searched here (``TermRows``)."""
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
    rows = np.empty(n, np.int64)
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
    for j in range(vendor_rows.shape[0]):
        out[vendor_rows[j], 3] = vendor_cover[j]
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
    # the description terms' term_item rows (searched once), then those among the candidates
    starts = np.zeros(term_col.shape[0], np.int64)
    ends = np.zeros(term_col.shape[0], np.int64)
    m = 0
    for t in range(term_col.shape[0]):
        if term_col[t] < MAX_TERMS:
            starts[t], ends[t] = _key_range(term_item_keys, term_id[t])
            m += ends[t] - starts[t]
    hit_rows = np.empty(m, np.int64)
    hit_cols = np.empty(m, np.int64)
    hit_share = np.empty(m, np.float32)
    h = 0
    for t in range(term_col.shape[0]):
        if term_col[t] < MAX_TERMS:
            for p in range(starts[t], ends[t]):
                k = _position(sorted_ids, term_item_keys[p] & _LOW32)
                if k >= 0:
                    hit_rows[h] = id_order[k]
                    hit_cols[h] = term_col[t]
                    hit_share[h] = term_item_share[p]
                    h += 1
    if h:  # desc_item_mean / _max over the rows with a term_item row (ascending)
        mark = np.zeros(n, np.int64)
        for j in range(h):
            mark[hit_rows[j]] = 1
        hit = 0
        for r in range(n):
            if mark[r]:
                hit += 1
                mark[r] = hit
                rows[hit - 1] = r
        block = np.zeros((hit, MAX_TERMS), np.float32)
        for j in range(h):
            block[mark[hit_rows[j]] - 1, hit_cols[j]] = hit_share[j]
        for a in range(hit):
            r = rows[a]
            out[r, 6] = _round4(np.float64(_row_sum(block[a])) / np.float64(n_known))
            out[r, 7] = _row_max(block[a])


_NO_I64: Final = np.empty(0, np.int64)
_NO_F32: Final = np.empty(0, np.float32)
_NO_F64: Final = np.empty(0, np.float64)
_WIDTH: Final = 9


def fill(req: ExpenseParts, num: F32) -> None:
    """The compiled ``serving.Fill``: ``serving.fill_numpy``'s values, bit for bit."""
    base, staff, seller = req.base, req.staff, req.seller
    t = req.tables.tables
    term_col = np.array([j for j, _ in req.terms], np.int64)
    term_id = np.array([tid for _, tid in req.terms], np.int64)
    term_cat, term_item = t["term_cat"], t["term_item"]
    numeric(
        num,
        req.day,
        req.log_amount,
        base.created_days,
        base.item_last,
        base.item_amt_mean,
        base.item_amt_den,
        base.item_missing,
        staff.item_rows,
        staff.item_values,
        staff.cat_pos,
        staff.cat_values,
        staff.count,
        seller.item_rows,
        seller.item_values,
        seller.cat_pos,
        seller.cat_values,
        seller.count,
        base.cat_block,
        base.cat_amt_mean,
        base.cat_amt_den,
        base.cat_missing,
        base.cat_of_row,
        base.u_cat,
        term_col,
        term_id,
        term_cat.keys,
        term_cat.columns["share"],
        req.n_known,
    )
    cands, tables = req.candidates, req.tables
    index = NameIndex.of(cands)
    names = index.names
    emp = EmployeeNames.of(req.employee, tables, index, cands)
    vendor = VendorNames.of(req.vendor_name, index, cands)
    text(
        num[:, C_TEXT : C_TEXT + _WIDTH],
        _local_terms(req.desc_terms, names.vocab),
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
        _NO_F32 if emp is None else emp.share_column,
        _NO_I64 if emp is None else emp.local,
        _NO_F64 if emp is None else emp.share,
        len(names.vocab),
        _NO_I64 if vendor is None else vendor.rows,
        _NO_F32 if vendor is None else vendor.cover,
        term_col,
        term_id,
        term_item.keys,
        term_item.columns["share"],
        base.sorted_ids,
        base.id_order,
        req.n_known,
    )
