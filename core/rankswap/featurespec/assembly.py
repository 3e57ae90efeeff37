"""Feature assembly: the model input for (context, candidate) rows, the same code for one
expense at serving time (``assemble``) and for many in training (``assemble_batch``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .inputs import Candidates, ContextBatch, ModelInput, RankContext
from .itemtext import ITEM_TEXT_FEATURES, text_features
from .schema import (
    AMT_STD_FLOOR,
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
    CATEGORY_DEFAULTS,
    DAYS_NEVER,
    EMP_ITEM_DEFAULTS,
    F32,
    I64,
    ITEM_DEFAULTS,
    LOW32,
    MAX_TERMS,
    NUMERIC_FEATURES,
    OBJ,
    VENDOR_ITEM_DEFAULTS,
    ZERO1,
    FeatureSpecError,
)
from .tables import FeatureTables, Table, Token
from .terms import department_term, industry_term, pair_key_nonneg, tokenize

CONTEXT_FREE_KEEP: Final = 2
"""Context-free parts kept per ``Candidates``: one per ``FeatureTables`` object, for the active
bundle and the one before it (a rollout serves both for a while). ~70 bytes per candidate each."""


@dataclass(frozen=True, slots=True)
class ContextFree:
    """What assembly computes from the candidates and feature tables alone, whatever the
    context: item-table values per candidate, category-table values per distinct category of
    the candidates (``Candidates.distinct_categories``), the candidates' categorical columns.
    The contexts' dates, employees, vendors, descriptions and amounts are applied per call."""

    item_counts: F32
    """[N, 5]: ``item_cnt_30d .. item_n_users_90d``."""
    cat: OBJ
    """[N, C] with ``category`` and ``account_code`` filled (the rest is written per call, on
    a copy when the part is shared)."""
    item_last: F32
    item_amt_mean: F32
    item_amt_den: F32
    """``max(amt_std, floor)``, the divisor of ``item_amount_z``."""
    item_found: npt.NDArray[np.bool_]
    item_default: int
    cat_share: F32
    """``cat_share_90d`` per distinct category."""
    cat_amt_mean: F32
    cat_amt_den: F32
    cat_found: npt.NDArray[np.bool_]
    shared: bool
    """Memoised and used by many calls: its arrays are read-only and ``cat`` is copied."""

    @staticmethod
    def build(candidates: Candidates, tables: FeatureTables, *, shared: bool) -> ContextFree:
        n = len(candidates)
        t = tables.tables
        pos, found = t["item"].lookup(candidates.item_ids)
        m = t["item"].gather(pos, found, ITEM_DEFAULTS)
        cat = np.empty((n, len(CATEGORICAL_FEATURES)), dtype=object)
        cat[:, 0] = candidates.categories
        cat[:, 1] = candidates.account_codes
        u_cat, _ = candidates.distinct_categories()
        cpos, cfound = t["category"].lookup(u_cat)
        cm = t["category"].gather(cpos, cfound, CATEGORY_DEFAULTS)
        out = ContextFree(
            item_counts=np.ascontiguousarray(m[:5].T),  # cnt_30d .. n_users_90d
            cat=cat,
            item_last=m[5].copy(),
            item_amt_mean=m[6].copy(),
            item_amt_den=np.maximum(m[7], np.float32(AMT_STD_FLOOR)),
            item_found=found,
            item_default=n - int(np.count_nonzero(found)),
            cat_share=cm[0].copy(),
            cat_amt_mean=cm[1].copy(),
            cat_amt_den=np.maximum(cm[2], np.float32(AMT_STD_FLOOR)),
            cat_found=cfound,
            shared=shared,
        )
        if shared:
            for value in (getattr(out, name) for name in out.__slots__):
                if isinstance(value, np.ndarray):
                    value.flags.writeable = False  # shared by every request
        return out


def context_free(candidates: Candidates, tables: FeatureTables) -> ContextFree:
    """The context-free part for these candidates and ``tables``, memoised on the candidates
    per tables object: keyed by the tables' identity token, which the entry holds, so a bundle
    swap never reuses another table's values; the last ``CONTEXT_FREE_KEEP`` tables are kept.
    Like the other memoised values it assumes the arrays are not mutated in place (the product
    DB's cached arrays are read-only)."""
    token = tables.token()
    memo: dict[Token, ContextFree] | None = candidates._memo.get("context_free")
    if memo is None:
        memo = candidates._memo.setdefault("context_free", {})
    out = memo.get(token)
    if out is None:
        out = memo.setdefault(token, ContextFree.build(candidates, tables, shared=True))
        while len(memo) > CONTEXT_FREE_KEEP:
            try:
                memo.pop(next(iter(memo)), None)
            except (RuntimeError, StopIteration):  # another thread changed it; fine
                break
    return out


def assemble(ctx: RankContext, candidates: Candidates, tables: FeatureTables) -> ModelInput:
    """Model input for one expense and its candidates (serving). Same code as training."""
    n = len(candidates)
    return assemble_batch(
        ContextBatch.from_contexts([ctx]), np.zeros(n, dtype=np.int64), candidates, tables
    )


def assemble_batch(
    contexts: ContextBatch,
    ctx_index: I64,
    candidates: Candidates,
    tables: FeatureTables,
    *,
    n_candidates: npt.ArrayLike | None = None,
) -> ModelInput:
    """Model input for rows (context ``ctx_index[i]``, candidate row ``i``).

    ``n_candidates`` (per row) is the size of the candidate list the row was drawn from; by
    default it is the number of rows per context (right for serving, where every candidate of
    the tenant is scored; training passes the catalogue size at the expense's time).

    The context-free part (:class:`ContextFree`) is computed by one path for both cases; with
    a single context (serving) it is memoised on the ``Candidates`` object per
    ``FeatureTables`` object (:func:`context_free`), per-context values are scalars broadcast
    over the rows, and pair tables are searched within that employee's / vendor's key range.
    Each table is read with one gather of all its columns (:meth:`Table.gather`)."""
    n = len(candidates)
    ci = np.asarray(ctx_index, dtype=np.int64)
    if ci.shape[0] != n:
        raise FeatureSpecError("ctx_index must have one entry per candidate row")
    single = len(contexts) == 1
    pre = (
        context_free(candidates, tables)
        if single
        else ContextFree.build(candidates, tables, shared=False)
    )
    num = np.empty((n, len(NUMERIC_FEATURES)), dtype=np.float32)
    t = tables.tables
    items = candidates.item_ids

    def per_row(values: Any) -> Any:
        """A per-context array as seen by the rows: one context's scalar, or one per row."""
        return values[0] if single else values[ci]

    def pair_lookup(table: Table, ids: I64, low: I64, index: Any) -> Any:
        if single:
            return table.lookup_pairs(int(ids[0]), low)
        return table.lookup(pair_key_nonneg(ids[index], low))

    # per-context values, as arrays over contexts (the same ufunc loops for one or many)
    ctx_log_amount = np.log1p(np.maximum(contexts.amounts, 0.0)).astype(np.float32)
    if n_candidates is None:
        per_ctx = np.bincount(ci, minlength=len(contexts)).astype(np.float32)
        log_ncand: Any = per_row(np.log1p(per_ctx))
    else:
        log_ncand = np.log1p(np.asarray(n_candidates, dtype=np.float32))
    day: Any = per_row(contexts.expense_days.astype(np.float32))
    log_amount: Any = per_row(ctx_log_amount)
    num[:, C_LOG_AMOUNT] = log_amount
    num[:, C_LOG_NCAND] = log_ncand
    age = num[:, C_ITEM_AGE]
    np.subtract(day, candidates.created_days(), out=age)
    np.clip(age, 0.0, DAYS_NEVER, out=age)

    def days_since(last: F32, out: F32) -> None:
        # a missing row reads as "last used infinitely long ago", clipped to DAYS_NEVER
        np.subtract(day, last, out=out)
        np.clip(out, 0.0, DAYS_NEVER, out=out)

    # item
    num[:, C_ITEM : C_ITEM + 5] = pre.item_counts
    days_since(pre.item_last, num[:, C_ITEM + 5])
    z = (log_amount - pre.item_amt_mean) / pre.item_amt_den
    num[:, C_ITEM + 6] = np.where(pre.item_found, np.clip(z, -10.0, 10.0), np.float32(0.0))

    # employee x item
    pos, found = pair_lookup(t["emp_item"], contexts.employee_ids, items, ci)
    m = t["emp_item"].gather(pos, found, EMP_ITEM_DEFAULTS)
    num[:, C_EMP_ITEM : C_EMP_ITEM + 2] = m[:2].T
    days_since(m[2], num[:, C_EMP_ITEM + 2])
    num[:, C_EMP_ITEM + 3] = m[3]
    emp_item_default = n - int(np.count_nonzero(found))

    # vendor x item
    pos, found = pair_lookup(t["vendor_item"], contexts.vendor_ids, items, ci)
    m = t["vendor_item"].gather(pos, found, VENDOR_ITEM_DEFAULTS)
    num[:, C_VENDOR_ITEM : C_VENDOR_ITEM + 2] = m[:2].T
    days_since(m[2], num[:, C_VENDOR_ITEM + 2])

    # context volume: looked up per context, then broadcast to rows
    pos, emp_found = t["employee"].lookup(contexts.employee_ids)
    num[:, C_CTX] = per_row(t["employee"].gather(pos, emp_found, ZERO1)[0])
    pos, ven_found = t["vendor"].lookup(contexts.vendor_ids)
    num[:, C_CTX + 1] = per_row(t["vendor"].gather(pos, ven_found, ZERO1)[0])

    # category level: computed once per distinct (context, category), then broadcast to rows.
    # ``dc`` indexes the candidates' distinct categories (the context-free part's order).
    all_cat, cat_of_row = candidates.distinct_categories()
    if single:
        dc: Any = slice(None)
        u_ctx: Any = 0
        inv = cat_of_row
    else:
        upair, inv = np.unique(pair_key_nonneg(ci, cat_of_row), return_inverse=True)
        u_ctx = upair >> 32
        dc = upair & LOW32
    u_cat = all_cat[dc]
    u = u_cat.shape[0]
    # the features emp_cat_share .. dept_cat_share
    block = np.empty((u, 8), dtype=np.float32)
    pos, found = pair_lookup(t["emp_cat"], contexts.employee_ids, u_cat, u_ctx)
    block[:, 0] = t["emp_cat"].gather(pos, found, ZERO1)[0]
    pos, found = pair_lookup(t["vendor_cat"], contexts.vendor_ids, u_cat, u_ctx)
    block[:, 1] = t["vendor_cat"].gather(pos, found, ZERO1)[0]
    block[:, 2] = pre.cat_share[dc]
    cat_z = (ctx_log_amount[u_ctx] - pre.cat_amt_mean[dc]) / pre.cat_amt_den[dc]
    block[:, 3] = np.where(pre.cat_found[dc], np.clip(cat_z, -10.0, 10.0), 0.0)

    # description terms, industry and department x category
    desc_terms = [tokenize(str(d)) for d in contexts.descriptions.tolist()]  # once per context
    term_ids, unknown_terms = _context_terms(contexts, desc_terms, tables)
    tc = t["term_cat"]
    n_desc = term_ids.shape[1] - 2
    tids = term_ids[0][None, :] if single else term_ids[u_ctx]  # [1 or U, n_desc + 2]
    keys = pair_key_nonneg(tids, u_cat[:, None])
    pos, found = tc.lookup(keys)
    share = tc.get("share", pos, found, 0.0)
    desc_share = np.where(found[:, :n_desc], share[:, :n_desc], 0.0)
    n_known = (tids[:, :n_desc] >= 0).sum(axis=1)
    desc_mean = np.where(n_known > 0, desc_share.sum(axis=1) / np.maximum(n_known, 1), 0.0)
    desc_max = desc_share.max(axis=1) if n_desc else np.zeros(u)
    block[:, 4] = desc_mean
    block[:, 5] = desc_max
    block[:, 6] = share[:, n_desc]
    block[:, 7] = share[:, n_desc + 1]
    num[:, C_CAT : C_CAT + 8] = block.take(inv, axis=0)

    # the expense vs the item's own name and code, and the description's terms x item
    text = num[:, C_TEXT : C_TEXT + len(ITEM_TEXT_FEATURES)]
    text_features(
        contexts, ci, candidates, tables, desc_terms, term_ids[:, :n_desc], single=single, out=text
    )

    cat = pre.cat.copy() if pre.shared else pre.cat
    cat[:, 2] = per_row(contexts.industries)
    cat[:, 3] = per_row(contexts.departments)
    return ModelInput(
        num=num,
        cat=cat,
        rows=n,
        item_default_rows=pre.item_default,
        emp_item_default_rows=emp_item_default,
        unknown_employee_rows=_rows_without(emp_found, ci, single),
        unknown_vendor_rows=_rows_without(ven_found, ci, single),
        unknown_terms=unknown_terms,
    )


def _rows_without(found: npt.NDArray[np.bool_], ci: I64, single: bool) -> int:
    """Rows whose context's key was not found (``found`` is per context): for one context no
    per-row gather is needed on the serving path."""
    if single:
        return 0 if bool(found[0]) else int(ci.shape[0])
    return int(np.count_nonzero(~found[ci]))


def _context_terms(
    contexts: ContextBatch, desc_terms: list[list[str]], tables: FeatureTables
) -> tuple[I64, int]:
    """Term ids per context, [n_ctx, MAX_TERMS + 2]: description terms (``desc_terms``: the
    contexts' descriptions, ``tokenize``d once; -1 padded), then the industry term, then the
    department term (-1 when unknown; also -1 for terms not in the vocabulary). Loops over contexts only; returns the count of unknown description terms."""
    index = tables.term_index()
    width = MAX_TERMS + 2
    rows: list[list[int]] = []
    unknown = 0
    for i in range(len(contexts)):
        row = [index.get(term, -1) for term in desc_terms[i]]
        unknown += row.count(-1)
        row.extend([-1] * (MAX_TERMS - len(row)))
        row.append(index.get(industry_term(str(contexts.industries[i])), -1))
        row.append(index.get(department_term(str(contexts.departments[i])), -1))
        rows.append(row)
    if not rows:
        return np.full((0, width), -1, dtype=np.int64), 0
    return np.array(rows, dtype=np.int64), unknown
