"""The feature pipeline as it was before the columnar engine (pandas group-bys over the whole
history, one full aggregation per call): kept only as the reference the engine is compared with
(tests/unit/training/test_training_columnar.py). Frozen: do not change it with the features;
a change of feature meaning bumps the schema and this reference is then retired."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from rankswap import featurespec as fs
from rankswap_training.features import WINDOW_DAYS, History

_TERM_SMOOTHING = 2.0


def build_tables(history: History, as_of: date) -> fs.FeatureTables:
    """Feature tables as of ``as_of``: aggregates of expenses dated in
    ``[as_of - 365 d, as_of)`` (never on or after ``as_of``)."""
    end = fs.to_day(as_of)
    exp = history.expenses
    day = exp["day"].to_numpy()
    sel = (day < end) & (day >= end - WINDOW_DAYS)
    h = exp.loc[sel].copy()
    age = end - h["day"].to_numpy()  # 1 .. 365
    h["w30"] = (age <= 30).astype(np.float64)
    h["w90"] = (age <= 90).astype(np.float64)
    h["la"] = np.log1p(np.maximum(h["amount"].to_numpy(), 0.0))
    h["one"] = 1.0

    tables: dict[str, dict[str, np.ndarray]] = {}

    # item
    g = h.groupby("item_id", sort=True)
    item = g.agg(
        cnt_30d=("w30", "sum"),
        cnt_90d=("w90", "sum"),
        cnt_365d=("one", "sum"),
        last_day=("day", "max"),
        amt_mean=("la", "mean"),
        amt_std=("la", "std"),
        tenant_id=("tenant_id", "first"),
    )
    tenant90 = h.groupby("tenant_id")["w90"].sum()
    item["share_90d"] = item["cnt_90d"].to_numpy() / _tenant_totals(item["tenant_id"], tenant90)
    users = h.loc[h["w90"] > 0].groupby("item_id")["employee_id"].nunique()
    item["n_users_90d"] = users.reindex(item.index).fillna(0.0)
    item["amt_std"] = item["amt_std"].fillna(0.0)
    tables["item"] = _table(item.index.to_numpy(), item, "item")

    # employee x item
    ei = h.groupby(["employee_id", "item_id"], sort=True).agg(
        cnt_365d=("one", "sum"), last_day=("day", "max"), last_id=("id", "max")
    )
    emp_tot = h.groupby("employee_id")["one"].sum()
    emp_idx = ei.index.get_level_values(0)
    ei["share_365d"] = ei["cnt_365d"].to_numpy() / emp_tot.reindex(emp_idx).to_numpy()
    ei["recency_rank"] = (
        ei.assign(emp=emp_idx).groupby("emp")["last_id"].rank(ascending=False, method="first")
    )
    tables["emp_item"] = _table(
        fs.pair_key(emp_idx.to_numpy(), ei.index.get_level_values(1).to_numpy()), ei, "emp_item"
    )

    # vendor x item (expenses without a vendor do not count)
    hv = h.loc[h["vendor_id"] >= 0]
    vi = hv.groupby(["vendor_id", "item_id"], sort=True).agg(
        cnt_365d=("one", "sum"), last_day=("day", "max")
    )
    ven_tot = hv.groupby("vendor_id")["one"].sum()
    ven_idx = vi.index.get_level_values(0)
    vi["share_365d"] = vi["cnt_365d"].to_numpy() / ven_tot.reindex(ven_idx).to_numpy()
    tables["vendor_item"] = _table(
        fs.pair_key(ven_idx.to_numpy(), vi.index.get_level_values(1).to_numpy()),
        vi,
        "vendor_item",
    )

    tables["employee"] = _table(
        emp_tot.index.to_numpy(), pd.DataFrame({"cnt_365d": emp_tot}), "employee"
    )
    tables["vendor"] = _table(
        ven_tot.index.to_numpy(), pd.DataFrame({"cnt_365d": ven_tot}), "vendor"
    )

    # category level
    ec = h.groupby(["employee_id", "category_id"], sort=True)["one"].sum()
    e_idx = ec.index.get_level_values(0)
    tables["emp_cat"] = _table(
        fs.pair_key(e_idx.to_numpy(), ec.index.get_level_values(1).to_numpy()),
        pd.DataFrame({"share_365d": ec.to_numpy() / emp_tot.reindex(e_idx).to_numpy()}),
        "emp_cat",
    )
    vc = hv.groupby(["vendor_id", "category_id"], sort=True)["one"].sum()
    v_idx = vc.index.get_level_values(0)
    tables["vendor_cat"] = _table(
        fs.pair_key(v_idx.to_numpy(), vc.index.get_level_values(1).to_numpy()),
        pd.DataFrame({"share_365d": vc.to_numpy() / ven_tot.reindex(v_idx).to_numpy()}),
        "vendor_cat",
    )
    cat = h.groupby("category_id", sort=True).agg(
        cnt_90d=("w90", "sum"),
        amt_mean=("la", "mean"),
        amt_std=("la", "std"),
        tenant_id=("tenant_id", "first"),
    )
    cat["share_90d"] = cat["cnt_90d"].to_numpy() / _tenant_totals(cat["tenant_id"], tenant90)
    cat["amt_std"] = cat["amt_std"].fillna(0.0)
    tables["category"] = _table(cat.index.to_numpy(), cat, "category")

    # context terms (description terms, industry, department) x category
    t = history.terms
    t = t.loc[sel[t["row"].to_numpy()]]
    rows = t["row"].to_numpy()
    pieces = [
        pd.DataFrame(
            {
                "tenant_id": exp["tenant_id"].to_numpy()[rows],
                "term": t["term"].to_numpy(),
                "category_id": exp["category_id"].to_numpy()[rows],
            }
        ),
        pd.DataFrame(
            {
                "tenant_id": h["tenant_id"].to_numpy(),
                "term": [fs.industry_term(s) for s in h["industry"].to_numpy()],
                "category_id": h["category_id"].to_numpy(),
            }
        ).loc[h["industry"].to_numpy() != ""],
        pd.DataFrame(
            {
                "tenant_id": h["tenant_id"].to_numpy(),
                "term": [fs.department_term(s) for s in h["department"].to_numpy()],
                "category_id": h["category_id"].to_numpy(),
            }
        ).loc[h["department"].to_numpy() != ""],
    ]
    tc_rows = pd.concat(pieces, ignore_index=True)
    et = _emp_term_rows(history, end)
    vocab = np.array(sorted(set(tc_rows["term"].tolist()) | set(et["term"].tolist())), dtype=object)
    tc = tc_rows.groupby(["tenant_id", "term", "category_id"], sort=False).size().rename("n")
    tc = tc.reset_index()
    term_tot = tc.groupby(["tenant_id", "term"])["n"].transform("sum")
    tc["share"] = tc["n"] / (term_tot + _TERM_SMOOTHING)
    term_id = np.searchsorted(vocab, tc["term"].to_numpy(dtype=object))
    tables["term_cat"] = _table(fs.pair_key(term_id, tc["category_id"].to_numpy()), tc, "term_cat")
    tables["term_item"] = _term_item(exp, t, end, vocab)
    term_id = np.searchsorted(vocab, et["term"].to_numpy(dtype=object))
    tables["emp_term"] = _table(fs.pair_key(et["employee_id"].to_numpy(), term_id), et, "emp_term")
    return fs.FeatureTables.from_arrays(as_of, tables, vocab)


def _emp_term_rows(history: History, end: int) -> pd.DataFrame:
    """(employee_id, term, share): the employee's expenses of the last ``TERM_ITEM_DAYS``
    before ``end``, each weighted ``0.5 ** (age / EMP_TERM_HALF_LIFE_DAYS)``; share = weight of
    those whose item's name holds the term (``featurespec.item_terms``) / the employee's
    total weight."""
    exp = history.expenses
    day = exp["day"].to_numpy()
    sel = np.flatnonzero((day < end) & (day >= end - fs.TERM_ITEM_DAYS))
    columns = {"employee_id": np.empty(0, np.int64), "term": np.empty(0, object), "share": []}
    if len(sel) == 0:
        return pd.DataFrame(columns)
    weight = 0.5 ** ((end - day[sel]) / fs.EMP_TERM_HALF_LIFE_DAYS)
    emp = exp["employee_id"].to_numpy()[sel]
    it = history.items
    terms_of = {
        int(i): fs.item_terms(str(c), str(n))
        for i, c, n in zip(it["id"].to_numpy(), it["code"], it["name"], strict=True)
    }
    item = exp["item_id"].to_numpy()[sel]
    per = [terms_of.get(int(i), ()) for i in item]
    lens = np.array([len(p) for p in per], dtype=np.int64)
    rows = pd.DataFrame(
        {
            "employee_id": np.repeat(emp, lens),
            "term": np.array([t for p in per for t in p], dtype=object),
            "w": np.repeat(weight, lens),
        }
    )
    total = pd.Series(weight).groupby(emp).sum()
    et = rows.groupby(["employee_id", "term"], sort=False)["w"].sum().reset_index()
    et["share"] = et["w"].to_numpy() / total.reindex(et["employee_id"].to_numpy()).to_numpy()
    return et


def _term_item(
    exp: pd.DataFrame, terms: pd.DataFrame, end: int, vocab: np.ndarray
) -> dict[str, np.ndarray]:
    """P(item | term) within the tenant over the last ``TERM_ITEM_DAYS`` before ``end``:
    n(term, item) / (n(term) + smoothing), description terms only (``terms`` already holds
    only the 365-day window's rows, so every term is in ``vocab``)."""
    rows = terms["row"].to_numpy()
    recent = exp["day"].to_numpy()[rows] >= end - fs.TERM_ITEM_DAYS
    rows = rows[recent]
    ti = pd.DataFrame(
        {
            "tenant_id": exp["tenant_id"].to_numpy()[rows],
            "term": terms["term"].to_numpy()[recent],
            "item_id": exp["item_id"].to_numpy()[rows],
        }
    )
    ti = ti.groupby(["tenant_id", "term", "item_id"], sort=False).size().rename("n").reset_index()
    term_tot = ti.groupby(["tenant_id", "term"])["n"].transform("sum")
    ti["share"] = ti["n"] / (term_tot + _TERM_SMOOTHING)
    term_id = np.searchsorted(vocab, ti["term"].to_numpy(dtype=object))
    return _table(fs.pair_key(term_id, ti["item_id"].to_numpy()), ti, "term_item")


def _tenant_totals(tenant_ids: pd.Series, totals: pd.Series) -> np.ndarray:
    """Each row's tenant total (at least 1), as float64 also when there are no rows."""
    per_row = totals.reindex(tenant_ids.to_numpy()).to_numpy(dtype=np.float64)
    out: np.ndarray = np.maximum(np.nan_to_num(per_row, nan=1.0), 1.0)
    return out


def _table(keys: np.ndarray, frame: pd.DataFrame, name: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {"key": np.asarray(keys, dtype=np.int64)}
    for col in fs.TABLES[name]:
        out[col] = frame[col].to_numpy(dtype=np.float32)
    return out
