"""The expense history in memory (``History``) and the daily features' window rules.

The aggregations themselves are SQL (``featuresql``, one text for DuckDB and Spark) run by the
columnar engine (``columnar.HistoryDB``, DuckDB) or Spark (``sparkengine``):
``build_tables(history, as_of)`` runs them over an in-memory history; the pipelines keep the
whole history in DuckDB and bring only sampled rows into memory. Point in time: the tables as
of D aggregate expenses dated in ``[D - 365 d, D)``, never D or later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from rankswap import featurespec as fs
from rankswap.productdb import ProductDB
from rankswap_training.errors import NoData

log = logging.getLogger(__name__)

WINDOW_DAYS = 365


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
    """Expenses dated in ``[since, before)`` and every item created before ``before``, all in
    memory (small histories, tests); the pipelines keep the history in ``columnar.HistoryDB``
    and bring only sampled rows into memory."""
    from rankswap_training.columnar import HistoryDB

    with HistoryDB.from_product_db(db, before=before, since=since) as hdb:
        return hdb.history_of(np.arange(hdb.count(), dtype=np.int64))


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
    ``[as_of - 365 d, as_of)`` (never on or after ``as_of``), computed by the columnar engine
    (``columnar.HistoryDB.build_tables``) over this in-memory history."""
    from rankswap_training.columnar import HistoryDB

    with HistoryDB.from_history(history) as hdb:
        return hdb.build_tables(as_of)


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
    return require_first_day(
        date.fromordinal(int(inside.min()) + fs.EPOCH_ORDINAL) if len(inside) else None, as_of
    )


def require_first_day(first: date | None, as_of: date) -> date:
    """``first`` (the first expense day in the window before ``as_of``); ``NoData`` if None."""
    if first is None:
        raise NoData(
            f"no expenses in the {WINDOW_DAYS} days before {as_of.isoformat()}; "
            "nothing to build features from (check --as-of and that datagen ran)"
        )
    return first
