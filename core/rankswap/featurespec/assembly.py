"""Feature assembly: the model input for (context, candidate) rows of many contexts
(``assemble_batch``, training and evaluation). Serving assembles one context with
``serving.assemble``, which gives the same rows bit for bit from memoised parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .inputs import Candidates, ContextBatch, ModelInput
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
from .tables import FeatureTables, Table
from .terms import department_term, industry_term, pair_key_nonneg, tokenize


@dataclass(frozen=True, slots=True)
class ContextFree:
    """What assembly computes from the candidates and feature tables alone, whatever the
    context: item-table values per candidate, category-table values per distinct category of
    the candidates (``Candidates.distinct_categories``), the candidates' categorical columns.
    The contexts' dates, employees, vendors, descriptions and amounts are applied per call
    (``assemble_batch``); serving memoises it (``serving.ServingBase``)."""

    item_counts: F32
    """[N, 5]: ``item_cnt_30d .. item_n_users_90d``."""
    cat: OBJ
    """[N, C] with ``category`` and ``account_code`` filled (the rest is written per call)."""
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

    @staticmethod
    def build(candidates: Candidates, tables: FeatureTables) -> ContextFree:
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
        return ContextFree(
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

    Every table is read with one gather of all its columns (:meth:`Table.gather`). Serving
    (one context) computes the same rows with ``serving.assemble``."""
    n = len(candidates)
    ci = np.asarray(ctx_index, dtype=np.int64)
    if ci.shape[0] != n:
        raise FeatureSpecError("ctx_index must have one entry per candidate row")
    pre = ContextFree.build(candidates, tables)
    num = np.empty((n, len(NUMERIC_FEATURES)), dtype=np.float32)
    t = tables.tables
    items = candidates.item_ids

    def pair_lookup(table: Table, ids: I64, low: I64, index: Any) -> Any:
        return table.lookup(pair_key_nonneg(ids[index], low))

    # per-context values, as arrays over contexts, then per row
    ctx_log_amount = np.log1p(np.maximum(contexts.amounts, 0.0)).astype(np.float32)
    if n_candidates is None:
        per_ctx = np.bincount(ci, minlength=len(contexts)).astype(np.float32)
        log_ncand: Any = np.log1p(per_ctx)[ci]
    else:
        log_ncand = np.log1p(np.asarray(n_candidates, dtype=np.float32))
    day = contexts.expense_days.astype(np.float32)[ci]
    log_amount = ctx_log_amount[ci]
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
    num[:, C_CTX] = t["employee"].gather(pos, emp_found, ZERO1)[0][ci]
    pos, ven_found = t["vendor"].lookup(contexts.vendor_ids)
    num[:, C_CTX + 1] = t["vendor"].gather(pos, ven_found, ZERO1)[0][ci]

    # category level: computed once per distinct (context, category), then broadcast to rows.
    # ``dc`` indexes the candidates' distinct categories (the context-free part's order).
    all_cat, cat_of_row = candidates.distinct_categories()
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
    term_ids, unknown_terms = context_terms(
        desc_terms, contexts.industries.tolist(), contexts.departments.tolist(), tables
    )
    tc = t["term_cat"]
    n_desc = term_ids.shape[1] - 2
    tids = term_ids[u_ctx]  # [U, n_desc + 2]
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
    text_features(contexts, ci, candidates, tables, desc_terms, term_ids[:, :n_desc], out=text)

    cat = pre.cat
    cat[:, 2] = contexts.industries[ci]
    cat[:, 3] = contexts.departments[ci]
    return ModelInput(
        num=num,
        cat=cat,
        rows=n,
        item_default_rows=pre.item_default,
        emp_item_default_rows=emp_item_default,
        unknown_employee_rows=int(np.count_nonzero(~emp_found[ci])),
        unknown_vendor_rows=int(np.count_nonzero(~ven_found[ci])),
        unknown_terms=unknown_terms,
    )


def context_terms(
    desc_terms: list[list[str]],
    industries: list[str],
    departments: list[str],
    tables: FeatureTables,
) -> tuple[I64, int]:
    """Term ids per context, [n_ctx, MAX_TERMS + 2]: description terms (``desc_terms``: the
    contexts' descriptions, ``tokenize``d once; -1 padded), then the industry term, then the
    department term (-1 when unknown; also -1 for terms not in the vocabulary). Loops over
    contexts only; returns the count of unknown description terms."""
    index = tables.term_index()
    width = MAX_TERMS + 2
    rows: list[list[int]] = []
    unknown = 0
    for terms, industry, department in zip(desc_terms, industries, departments, strict=True):
        row = [index.get(term, -1) for term in terms]
        unknown += row.count(-1)
        row.extend([-1] * (MAX_TERMS - len(row)))
        row.append(index.get(industry_term(str(industry)), -1))
        row.append(index.get(department_term(str(department)), -1))
        rows.append(row)
    if not rows:
        return np.full((0, width), -1, dtype=np.int64), 0
    return np.array(rows, dtype=np.int64), unknown
