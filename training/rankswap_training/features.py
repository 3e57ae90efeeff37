"""Daily feature pipeline: aggregates of the expense history as of a date (``features build``).

``build_tables(history, as_of)`` is a pure function of the history strictly before ``as_of``
(point in time: an expense dated ``as_of`` or later never contributes), vectorised with pandas
group-bys. The model pipeline calls it for many snapshot dates; the daily job calls it once and
publishes the result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import select

from rankswap import featurespec as fs
from rankswap.productdb import ProductDB, schema
from rankswap_training.errors import NoData

log = logging.getLogger(__name__)

WINDOW_DAYS = 365
_TERM_SMOOTHING = 2.0  # share = n(term, cat) / (n(term) + smoothing): rare terms count less


@dataclass(frozen=True, slots=True)
class History:
    """Expenses with the attributes the features need (one row per expense, sorted by date).

    Columns: id, tenant_id, employee_id, vendor_id (-1 = none), item_id, category_id,
    description, amount, day (days since epoch), created_s (filing time, epoch seconds),
    department, industry, vendor_name. ``terms``: one row per (expense row, term) with columns row, term."""

    expenses: pd.DataFrame
    terms: pd.DataFrame
    items: pd.DataFrame  # id, tenant_id, code, name, category_id, category, account_code,
    #                      created_s, active

    @property
    def days(self) -> np.ndarray:
        return self.expenses["day"].to_numpy()

    @property
    def first_day(self) -> date | None:
        """Date of the earliest expense, None for an empty history."""
        days = self.days
        return date.fromordinal(int(days.min()) + fs.EPOCH_ORDINAL) if len(days) else None


def load_history(db: ProductDB, *, before: date, since: date | None = None) -> History:
    """Expenses dated in ``[since, before)`` and every item created before ``before``."""
    e, i, c = schema.expenses, schema.items, schema.categories
    emp, ven = schema.employees, schema.vendors
    stmt = (
        select(
            e.c.id,
            e.c.tenant_id,
            e.c.employee_id,
            e.c.vendor_id,
            e.c.item_id,
            i.c.category_id,
            e.c.description,
            e.c.amount,
            e.c.expense_date,
            e.c.created_at,
            emp.c.department,
            ven.c.industry,
            ven.c.name.label("vendor_name"),
        )
        .select_from(
            e.join(i, i.c.id == e.c.item_id)
            .join(emp, emp.c.id == e.c.employee_id)
            .outerjoin(ven, ven.c.id == e.c.vendor_id)
        )
        .where(e.c.expense_date < before)
        .order_by(e.c.expense_date, e.c.id)
    )
    if since is not None:
        stmt = stmt.where(e.c.expense_date >= since)
    raw = db.frame(stmt)
    items = db.frame(
        select(
            i.c.id,
            i.c.tenant_id,
            i.c.code,
            i.c.name,
            i.c.category_id,
            c.c.name.label("category"),
            c.c.account_code,
            i.c.created_at,
            i.c.active,
        )
        .select_from(i.join(c, c.c.id == i.c.category_id))
        .where(i.c.created_at < _midnight(before))
        .order_by(i.c.id)
    )
    return make_history(raw, items)


def _midnight(d: date) -> pd.Timestamp:
    return pd.Timestamp(d)


def make_history(raw: pd.DataFrame, items: pd.DataFrame) -> History:
    """Normalise raw expense and item rows (as read from the DB) into a ``History``."""
    n = len(raw)
    exp = pd.DataFrame(
        {
            "id": raw["id"].to_numpy(dtype=np.int64) if n else np.empty(0, np.int64),
            "tenant_id": raw["tenant_id"].astype(object).to_numpy() if n else np.empty(0, object),
            "employee_id": _ints(raw, "employee_id"),
            "vendor_id": _ints(raw, "vendor_id"),
            "item_id": _ints(raw, "item_id"),
            "category_id": _ints(raw, "category_id"),
            "description": raw["description"].fillna("").astype(str).to_numpy(dtype=object)
            if n
            else np.empty(0, object),
            "amount": raw["amount"].to_numpy(dtype=np.float64) if n else np.empty(0),
            "day": _days(raw["expense_date"]) if n else np.empty(0, np.int64),
            "created_s": _seconds(raw["created_at"]) if n else np.empty(0, np.int64),
            "department": raw["department"].fillna("").astype(str).to_numpy(dtype=object)
            if n
            else np.empty(0, object),
            "industry": raw["industry"].fillna("").astype(str).to_numpy(dtype=object)
            if n
            else np.empty(0, object),
            "vendor_name": _texts(raw, "vendor_name", n),
        }
    )
    exp = exp.sort_values(["day", "id"], kind="stable").reset_index(drop=True)
    # tokenise each distinct description once (text is the only per-row Python step)
    uniq, inv = np.unique(exp["description"].to_numpy(dtype=str), return_inverse=True)
    tok = [fs.tokenize(s) for s in uniq]
    lens = np.array([len(t) for t in tok], dtype=np.int64)
    flat = np.array([w for t in tok for w in t], dtype=object)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]) if len(lens) else np.empty(0, np.int64)
    row_len = lens[inv] if len(lens) else np.empty(0, np.int64)
    rows = np.repeat(np.arange(len(exp)), row_len)
    within = np.arange(len(rows)) - np.repeat(np.cumsum(row_len) - row_len, row_len)
    term_idx = np.repeat(starts[inv], row_len) + within if len(rows) else np.empty(0, np.int64)
    terms = pd.DataFrame({"row": rows, "term": flat[term_idx] if len(rows) else flat[:0]})
    it = pd.DataFrame(
        {
            "id": _ints(items, "id"),
            "tenant_id": items["tenant_id"].astype(object).to_numpy()
            if len(items)
            else np.empty(0, object),
            "code": items["code"].astype(object).to_numpy() if len(items) else np.empty(0, object),
            "name": items["name"].astype(object).to_numpy() if len(items) else np.empty(0, object),
            "category_id": _ints(items, "category_id"),
            "category": items["category"].astype(object).to_numpy()
            if len(items)
            else np.empty(0, object),
            "account_code": items["account_code"].astype(str).to_numpy(dtype=object)
            if len(items)
            else np.empty(0, object),
            "created_s": _seconds(items["created_at"]) if len(items) else np.empty(0, np.int64),
            "active": items["active"].astype(bool).to_numpy() if len(items) else np.empty(0, bool),
        }
    )
    return History(expenses=exp, terms=terms, items=it)


def _texts(frame: pd.DataFrame, col: str, n: int) -> np.ndarray:
    """A text column ("" for NULL); absent in rows made by hand (tests) reads as all ""."""
    if not n:
        return np.empty(0, object)
    if col not in frame.columns:
        return np.full(n, "", dtype=object)
    return frame[col].fillna("").astype(str).to_numpy(dtype=object)


def _ints(frame: pd.DataFrame, col: str) -> np.ndarray:
    if len(frame) == 0:
        return np.empty(0, np.int64)
    return pd.to_numeric(frame[col]).fillna(-1).to_numpy(dtype=np.int64)


def _days(values: pd.Series) -> np.ndarray:
    return (
        pd.to_datetime(values).to_numpy().astype("datetime64[D]").astype(np.int64).astype(np.int64)
    )


def _seconds(values: pd.Series) -> np.ndarray:
    return pd.to_datetime(values).to_numpy().astype("datetime64[s]").astype(np.int64)


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


def snapshot_dates(first: date, last: date, every_days: int) -> list[date]:
    """Snapshot dates ``last, last - every, ...`` down to ``first`` (inclusive), ascending."""
    out = []
    d = last
    while d >= first:
        out.append(d)
        d -= timedelta(days=every_days)
    return sorted(out)


def require_history(history: History, as_of: date) -> date:
    """The first day with an expense in the window before ``as_of``; ``NoData`` if none."""
    end = fs.to_day(as_of)
    days = history.days
    inside = days[(days < end) & (days >= end - WINDOW_DAYS)]
    if len(inside) == 0:
        raise NoData(
            f"no expenses in the {WINDOW_DAYS} days before {as_of.isoformat()}; "
            "nothing to build features from (check --as-of and that datagen ran)"
        )
    return date.fromordinal(int(inside.min()) + fs.EPOCH_ORDINAL)
