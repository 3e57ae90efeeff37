"""Feature assembly for one expense (serving): ``assemble``, the rows ``assemble_batch`` computes
for that one context, bit for bit, with the work that depends only on (candidate list, feature
tables) done once.

:class:`ServingBase`, memoised on the ``Candidates`` object per ``FeatureTables`` object (the
product DB's cached list serves many requests), holds a model-input template whose context-free
columns are filled (item-table counts, ``log_n_candidates``, the documented defaults of the
pair tables) and what the per-request arithmetic reads (item and category table values, the
candidates' sorted ids). A request then copies the template and writes only what depends on
the expense. Pair tables are read from the other side: the employee's (vendor's) key range is
found with one search and its few rows are matched against the candidates' sorted ids, instead
of searching every candidate in the table; the rows that match take the table's values, the
others keep the template's defaults. Every lookup of one employee (vendor) key is memoised as one
entry (:class:`PartyRows`). The description's terms go through the same ``term_cat``
arithmetic as ``assemble_batch`` and the text features through ``itemtext.one_context``.
The lookups come first (:class:`ExpenseParts`), then the arithmetic, a :data:`Fill`:
:func:`fill_numpy` (the reference, numpy calls) or ``kernels.fill`` (:func:`compiled_fill`: the
same bits in two compiled calls).

Bit-identity with ``assemble_batch`` (the training path) is tested on generated worlds
(``tests/unit/core/test_featurespec.py``, ``tests/unit/core/test_itemtext.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from .assembly import ContextFree, assemble_batch
from .inputs import Candidates, ContextBatch, ModelInput, RankContext
from .itemtext import ITEM_TEXT_FEATURES, one_context
from .schema import (
    C_CAT,
    C_CTX,
    C_EMP_ITEM,
    C_ITEM,
    C_ITEM_AGE,
    C_LOG_AMOUNT,
    C_LOG_NCAND,
    C_TEXT,
    C_VENDOR_ITEM,
    CATEGORICAL_FEATURES,
    DAYS_NEVER,
    EMP_ITEM_DEFAULTS,
    F32,
    I64,
    LOW32,
    MAX_TERMS,
    NUMERIC_FEATURES,
    OBJ,
    VENDOR_ITEM_DEFAULTS,
    FeatureSpecError,
)
from .tables import FeatureTables, Table, Token
from .terms import department_term, industry_term, to_day, tokenize

SERVING_KEEP: Final = 2
""":class:`ServingBase` objects kept per ``Candidates``: one per ``FeatureTables`` object, for
the active bundle and the one before it (a rollout serves both for a while). Each is about
``4 * len(NUMERIC_FEATURES) + 60`` bytes per candidate (the template and the per-row values)."""

PARTY_KEEP: Final = 256
"""(side, employee or vendor) entries of :class:`PartyRows` kept per candidate list (and
feature tables): the recent employees and vendors. An entry is about 200 bytes plus 8 bytes
and 4 per table column for each row the key has among the candidates (its items, its
categories)."""

TERM_KEEP: Final = 512
"""Vocabulary terms whose rows (:class:`TermRows`) are kept per candidate list (and feature
tables): the description, industry and department terms requests use most. An entry is a few
dozen bytes per row it holds (a term's items among the candidates, its categories)."""


class KernelsUnavailable(FeatureSpecError):
    """The compiled kernels cannot be used in this process (the numpy path serves)."""


_ID_LIMIT: Final = 1 << 31
_clip: Final[np.ufunc] = np._core.umath.clip  # type: ignore[attr-defined]
"""``np.clip``'s ufunc, without the Python wrapper's dispatch (numpy 2)."""
_MISSING: Final = object()
_C_INDUSTRY: Final = CATEGORICAL_FEATURES.index("vendor_industry")
_C_DEPARTMENT: Final = CATEGORICAL_FEATURES.index("employee_department")


@dataclass(frozen=True, slots=True)
class ServingBase:
    """What ``assemble`` computes from the candidates and feature tables alone (read-only)."""

    num: F32
    """[N, F] template: item counts, ``log_n_candidates``, pair-table defaults filled."""
    cat: OBJ
    """[N, C] with ``category`` and ``account_code`` filled."""
    created_days: F32
    item_last: F32
    item_amt_mean: F32
    item_amt_den: F32
    item_missing: I64
    """Rows without an item-table row (their ``item_amount_z`` is 0)."""
    item_default: int
    sorted_ids: I64
    """The candidates' item ids, sorted (unique)."""
    id_order: I64
    """``sorted_ids[k]`` is the item of row ``id_order[k]``."""
    u_cat: I64
    """The candidates' distinct categories, sorted (``Candidates.distinct_categories``)."""
    cat_of_row: npt.NDArray[np.intp]
    cat_block: F32
    """[U, 8] template of the category-level features, ``cat_share_90d`` filled."""
    cat_amt_mean: F32
    cat_amt_den: F32
    cat_missing: I64
    """Distinct categories without a category-table row (their ``cat_amount_z`` is 0)."""

    @staticmethod
    def of(candidates: Candidates, tables: FeatureTables) -> ServingBase | None:
        """Memoised on ``candidates`` per tables object (keyed by the tables' identity token,
        which the entry holds, so a bundle swap never reuses another table's values; the last
        ``SERVING_KEEP`` are kept). ``None`` when the fast path does not apply (item ids not
        unique, or item or category ids outside ``[0, 2**31)``): ``assemble`` then takes the
        training path."""
        token = tables.token()
        memo: dict[Token, ServingBase | None] | None = candidates._memo.get("serving")
        if memo is None:
            memo = candidates._memo.setdefault("serving", {})
        hit = memo.get(token, _MISSING)  # one read: another thread may evict meanwhile
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
        out = memo.setdefault(token, ServingBase._build(candidates, tables))
        while len(memo) > SERVING_KEEP:
            try:
                memo.pop(next(iter(memo)), None)
            except (RuntimeError, StopIteration):  # another thread changed it; fine
                break
        return out

    @staticmethod
    def _build(candidates: Candidates, tables: FeatureTables) -> ServingBase | None:
        n = len(candidates)
        id_order, sorted_ids = candidates.id_order()
        u_cat, cat_of_row = candidates.distinct_categories()
        if n and (
            sorted_ids[0] < 0
            or sorted_ids[-1] >= _ID_LIMIT
            or bool(np.any(sorted_ids[1:] == sorted_ids[:-1]))
            or u_cat[0] < 0
            or u_cat[-1] >= _ID_LIMIT
        ):
            return None
        pre = ContextFree.build(candidates, tables)
        # column-major, as the compiled trees read it (one contiguous copy per column, where a
        # row-major ``num`` would be transposed on every request); every copy keeps the order
        num = np.zeros((n, len(NUMERIC_FEATURES)), dtype=np.float32, order="F")
        num[:, C_LOG_NCAND] = np.log1p(np.array([n], dtype=np.float32))[0]
        num[:, C_ITEM : C_ITEM + 5] = pre.item_counts
        # a pair-table miss: ``last_day`` NEVER_DAY (-1e9) reads DAYS_NEVER whatever the date
        num[:, C_EMP_ITEM : C_EMP_ITEM + 4] = EMP_ITEM_DEFAULTS
        num[:, C_EMP_ITEM + 2] = DAYS_NEVER
        num[:, C_VENDOR_ITEM : C_VENDOR_ITEM + 3] = VENDOR_ITEM_DEFAULTS
        num[:, C_VENDOR_ITEM + 2] = DAYS_NEVER
        cat_block = np.zeros((u_cat.shape[0], 8), dtype=np.float32)
        cat_block[:, 2] = pre.cat_share
        out = ServingBase(
            num=num,
            cat=pre.cat,
            created_days=candidates.created_days(),
            item_last=pre.item_last,
            item_amt_mean=pre.item_amt_mean,
            item_amt_den=pre.item_amt_den,
            item_missing=np.flatnonzero(~pre.item_found),
            item_default=pre.item_default,
            sorted_ids=sorted_ids,
            id_order=id_order,
            u_cat=u_cat,
            cat_of_row=cat_of_row,
            cat_block=cat_block,
            cat_amt_mean=pre.cat_amt_mean,
            cat_amt_den=pre.cat_amt_den,
            cat_missing=np.flatnonzero(~pre.cat_found),
        )
        for value in (getattr(out, name) for name in out.__slots__):
            if isinstance(value, np.ndarray):
                value.flags.writeable = False  # shared by every request
        return out


PARTY_SIDES: Final = {
    "employee": ("emp_item", "emp_cat", "employee"),
    "vendor": ("vendor_item", "vendor_cat", "vendor"),
}
"""Per side of an expense: its item-level pair table, its category-level pair table, and its
own (single-column count) table."""


@dataclass(frozen=True, slots=True)
class PartyRows:
    """An employee's or vendor's part of the model input for one candidate list: its rows of
    the item-level pair table among the candidates (``emp_item``, ``vendor_item``: candidate
    rows, the table's values [columns, hits]), of the category-level one among their distinct
    categories (``emp_cat``, ``vendor_cat``: positions in ``ServingBase.u_cat``, values), and its
    own table's count (0 without a row) and whether it has a row: every lookup of the key at
    once, memoised per (tables, side, key) on the candidates (``PARTY_KEEP`` kept, least
    recently used dropped first)."""

    item_rows: I64
    item_values: F32
    cat_pos: I64
    cat_values: F32
    count: np.float32
    found: bool

    @staticmethod
    def of(
        side: str, key: int, tables: FeatureTables, base: ServingBase, candidates: Candidates
    ) -> PartyRows:
        memo = candidates.lru("party_rows", PARTY_KEEP)
        memo_key = (tables.token(), side, key)
        hit, found = memo.get(memo_key)
        if found:
            return hit  # type: ignore[no-any-return]
        item_name, cat_name, own = PARTY_SIDES[side]
        t = tables.tables
        pos, tpos = _matching(t[item_name], key, base.sorted_ids)
        cat_pos, cpos = _matching(t[cat_name], key, base.u_cat)
        count, has_row = _scalar(t[own], key)
        out = PartyRows(
            item_rows=base.id_order[pos],
            item_values=t[item_name].rows(tpos),
            cat_pos=cat_pos,
            cat_values=t[cat_name].rows(cpos),
            count=count,
            found=has_row,
        )
        for value in (out.item_rows, out.item_values, out.cat_pos, out.cat_values):
            value.flags.writeable = False  # shared by every request
        memo.put(memo_key, out)
        return out


@dataclass(frozen=True, slots=True)
class TermRows:
    """One vocabulary term's rows for a candidate list: its ``term_item`` rows among the
    candidates (candidate rows, shares) and its ``term_cat`` rows among their distinct
    categories (positions in ``ServingBase.u_cat``, shares)."""

    item_rows: I64
    item_share: F32
    cat_pos: I64
    cat_share: F32

    @staticmethod
    def of(tid: int, tables: FeatureTables, base: ServingBase, candidates: Candidates) -> TermRows:
        """Memoised per (tables, term) on ``candidates`` (``TERM_KEEP`` kept, least recently
        used dropped first)."""
        memo = candidates.lru("term_rows", TERM_KEEP)
        key = (tables.token(), tid)
        hit, found = memo.get(key)
        if found:
            return hit  # type: ignore[no-any-return]
        t = tables.tables
        rows, tpos = _matching(t["term_item"], tid, base.sorted_ids)
        cat_pos, cpos = _matching(t["term_cat"], tid, base.u_cat)
        out = TermRows(
            item_rows=base.id_order[rows],
            item_share=t["term_item"].columns["share"][tpos],
            cat_pos=cat_pos,
            cat_share=t["term_cat"].columns["share"][cpos],
        )
        memo.put(key, out)
        return out


@dataclass(frozen=True, slots=True)
class ExpenseParts:
    """One expense's parts of the model input, looked up (memoised) before any arithmetic: what
    a :data:`Fill` reads."""

    base: ServingBase
    candidates: Candidates
    tables: FeatureTables
    day: np.float32
    log_amount: np.float32
    employee: int
    """-1 when unknown."""
    vendor_name: str
    staff: PartyRows
    seller: PartyRows
    desc_terms: list[str]
    terms: list[tuple[int, int]]
    """The context's known terms as (term column of ``context_terms``, term id): ``known_terms``
    (their rows: :class:`TermRows`, which :func:`fill_numpy` looks up; the kernels search the
    tables themselves)."""
    n_known: int
    """Known description terms."""

    @staticmethod
    def of(
        ctx: RankContext, candidates: Candidates, tables: FeatureTables, base: ServingBase
    ) -> tuple[ExpenseParts, int]:
        """The request's parts, and how many of its description's terms are unknown."""
        desc_terms = tokenize(ctx.description)
        known, n_known, unknown_terms = known_terms(
            desc_terms, ctx.vendor_industry or "", ctx.employee_department or "", tables
        )
        emp = -1 if ctx.employee_id is None else int(ctx.employee_id)
        ven = -1 if ctx.vendor_id is None else int(ctx.vendor_id)
        req = ExpenseParts(
            base=base,
            candidates=candidates,
            tables=tables,
            day=np.float32(to_day(ctx.expense_date)),
            # np.log1p on the float64 as assemble_batch's array (max() as np.maximum: -0.0
            # stays -0.0)
            log_amount=np.float32(np.log1p(max(float(ctx.amount), 0.0))),
            employee=emp,
            vendor_name=ctx.vendor_name or "",
            staff=PartyRows.of("employee", emp, tables, base, candidates),
            seller=PartyRows.of("vendor", ven, tables, base, candidates),
            desc_terms=desc_terms,
            terms=known,
            n_known=n_known,
        )
        return req, unknown_terms


Fill = Callable[[ExpenseParts, F32], None]
"""Writes the context-dependent numeric features of an :class:`ExpenseParts` into ``num`` (a
copy of ``ServingBase.num``): :func:`fill_numpy` (the reference) or the compiled kernels'
(``kernels.fill``), which give the same bits."""


def compiled_fill() -> Fill:
    """The compiled :data:`Fill` (``kernels.fill``: numba, compiled or loaded from its disk cache
    on the first call in a process); :class:`KernelsUnavailable` when numba is not installed
    (the training image) or cannot compile the kernels here."""
    try:
        from . import kernels
    except Exception as exc:  # ImportError without numba; numba's own errors while compiling
        raise KernelsUnavailable(f"{type(exc).__name__}: {exc}") from exc
    return kernels.fill


def assemble(ctx: RankContext, candidates: Candidates, tables: FeatureTables) -> ModelInput:
    """Model input for one expense and its candidates (serving): ``assemble_batch``'s rows for
    this one context, with the numpy arithmetic (:func:`fill_numpy`)."""
    return assemble_with(ctx, candidates, tables, fill_numpy)


def assemble_with(
    ctx: RankContext, candidates: Candidates, tables: FeatureTables, fill: Fill
) -> ModelInput:
    """:func:`assemble` with the arithmetic of ``fill``."""
    base = ServingBase.of(candidates, tables)
    if base is None:
        n = len(candidates)
        return assemble_batch(
            ContextBatch.from_contexts([ctx]), np.zeros(n, dtype=np.int64), candidates, tables
        )
    n = len(candidates)
    req, unknown_terms = ExpenseParts.of(ctx, candidates, tables, base)
    num = base.num.copy(order="F")
    fill(req, num)
    cat = base.cat.copy()
    cat[:, _C_INDUSTRY] = ctx.vendor_industry or ""
    cat[:, _C_DEPARTMENT] = ctx.employee_department or ""
    return ModelInput(
        num=num,
        cat=cat,
        rows=n,
        item_default_rows=base.item_default,
        emp_item_default_rows=n - req.staff.item_rows.shape[0],
        unknown_employee_rows=0 if req.staff.found else n,
        unknown_vendor_rows=0 if req.seller.found else n,
        unknown_terms=unknown_terms,
    )


def fill_numpy(req: ExpenseParts, num: F32) -> None:
    """The reference :data:`Fill`: numpy calls on the request's parts."""
    base, day, la = req.base, req.day, req.log_amount
    num[:, C_LOG_AMOUNT] = la
    _days_since(day, base.created_days, num[:, C_ITEM_AGE])
    _days_since(day, base.item_last, num[:, C_ITEM + 5])
    z = num[:, C_ITEM + 6]
    np.subtract(la, base.item_amt_mean, out=z)
    np.divide(z, base.item_amt_den, out=z)
    _clip10(z)
    z[base.item_missing] = 0.0

    # the employee's and the vendor's rows: pair tables matched against the candidates, counts
    staff, seller = req.staff, req.seller
    block = base.cat_block.copy()  # category level, per distinct category, then to rows
    for party, col, j in ((staff, C_EMP_ITEM, 0), (seller, C_VENDOR_ITEM, 1)):
        rows = party.item_rows
        if rows.shape[0]:
            values = party.item_values.copy()  # [columns, hits]
            _days_since(day, values[2], values[2])
            num[rows, col : col + values.shape[0]] = values.T
        if party.cat_pos.shape[0]:
            block[party.cat_pos, j] = party.cat_values[0]
    num[:, C_CTX] = staff.count
    num[:, C_CTX + 1] = seller.count
    cat_z = block[:, 3]
    np.subtract(la, base.cat_amt_mean, out=cat_z)
    np.divide(cat_z, base.cat_amt_den, out=cat_z)
    _clip10(cat_z)
    cat_z[base.cat_missing] = 0.0

    n_desc = MAX_TERMS
    rows_of = [(j, TermRows.of(tid, req.tables, base, req.candidates)) for j, tid in req.terms]
    if rows_of:
        _term_cat(rows_of, base.u_cat.shape[0], n_desc, req.n_known, block)
    num[:, C_CAT : C_CAT + 8] = block.take(base.cat_of_row, axis=0)

    one_context(
        req.employee,
        req.vendor_name,
        req.candidates,
        req.tables,
        req.desc_terms,
        _term_item(rows_of, n_desc),
        req.n_known,
        num[:, C_TEXT : C_TEXT + len(ITEM_TEXT_FEATURES)],
    )


def known_terms(
    desc_terms: list[str], industry: str, department: str, tables: FeatureTables
) -> tuple[list[tuple[int, int]], int, int]:
    """The context's terms the vocabulary holds, as (term column, term id) in the columns of
    ``assembly.context_terms`` (description terms from 0, the industry term at ``MAX_TERMS``,
    the department term at ``MAX_TERMS + 1``), with how many of the description's terms are
    known and how many are not: ``context_terms`` for one context without its -1 padding."""
    index = tables.term_index()
    known: list[tuple[int, int]] = []
    for j, term in enumerate(desc_terms):
        tid = index.get(term, -1)
        if tid >= 0:
            known.append((j, tid))
    n_known = len(known)
    for j, term in (
        (MAX_TERMS, industry_term(industry)),
        (MAX_TERMS + 1, department_term(department)),
    ):
        tid = index.get(term, -1)
        if tid >= 0:
            known.append((j, tid))
    return known, n_known, len(desc_terms) - n_known


def _days_since(day: np.float32, last: F32, out: F32) -> None:
    """``clip(day - last, 0, DAYS_NEVER)`` into ``out`` (as ``assemble_batch``)."""
    np.subtract(day, last, out=out)
    _clip(out, 0.0, DAYS_NEVER, out=out)  # minimum(maximum(x, 0), DAYS_NEVER), NaN kept


def _clip10(values: F32) -> None:
    _clip(values, -10.0, 10.0, out=values)


def _matching(table: Table, high: int, sorted_low: I64) -> tuple[I64, I64]:
    """The rows of ``table`` keyed ``(high, x)`` with ``x`` in ``sorted_low`` (sorted, unique):
    (positions of those ``x`` in ``sorted_low``, their table rows): ``lookup(pair_key(high,
    sorted_low))``'s hits, found from the key range's side."""
    lo, hi = table.key_range(high)
    if hi == lo or sorted_low.shape[0] == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    low = table.keys[lo:hi] & LOW32
    p = np.searchsorted(sorted_low, low)
    np.minimum(p, sorted_low.shape[0] - 1, out=p)
    hit = np.flatnonzero(sorted_low[p] == low)
    tpos: I64 = hit + lo
    out: I64 = p[hit]
    return out, tpos


def _scalar(table: Table, key: int) -> tuple[np.float32, bool]:
    """The single-column table's value at ``key`` (0 without a row) and whether it has one."""
    keys = table.keys
    if key < 0 or keys.shape[0] == 0:
        return np.float32(0.0), False
    p = int(np.searchsorted(keys, key))
    if p < keys.shape[0] and int(keys[p]) == key:
        return table.rows(np.array([p]))[0, 0], True
    return np.float32(0.0), False


def _term_cat(
    rows_of: list[tuple[int, TermRows]], n_cat: int, n_desc: int, n_known: int, block: F32
) -> None:
    """``desc_cat_mean``, ``desc_cat_max``, ``industry_cat_share``, ``dept_cat_share`` per
    distinct category into ``block[:, 4:8]`` (0 there before) from the context's terms'
    ``term_cat`` rows (term column ``j`` of ``context_terms``): ``assemble_batch``'s
    arithmetic on the same [categories, terms] blocks (0 where a (term, category) has no
    row)."""
    desc = np.zeros((n_cat, n_desc), dtype=np.float32)
    for j, rows in rows_of:
        if rows.cat_pos.shape[0]:
            if j < n_desc:
                desc[rows.cat_pos, j] = rows.cat_share
            else:  # industry, department: straight into the block (0 in its template)
                block[rows.cat_pos, 6 + j - n_desc] = rows.cat_share
    if n_known > 0:
        # divided by an int64 (not a Python int, which would keep the float32 sum in float32)
        block[:, 4] = desc.sum(axis=1) / np.int64(n_known)
    block[:, 5] = desc.max(axis=1) if n_desc else 0.0


def _term_item(rows_of: list[tuple[int, TermRows]], n_desc: int) -> tuple[I64, I64, F32]:
    """The description terms' ``term_item`` hits as (candidate row, term column, share)."""
    parts = [(j, rows) for j, rows in rows_of if j < n_desc and rows.item_rows.shape[0]]
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float32)
    if len(parts) == 1:
        j, rows = parts[0]
        return rows.item_rows, np.full(rows.item_rows.shape[0], j), rows.item_share
    lens = [rows.item_rows.shape[0] for _, rows in parts]
    return (
        np.concatenate([rows.item_rows for _, rows in parts]),
        np.repeat(np.array([j for j, _ in parts], dtype=np.int64), lens),
        np.concatenate([rows.item_share for _, rows in parts]),
    )
