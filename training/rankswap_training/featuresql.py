"""The daily feature definitions as SQL, one text for every engine (DuckDB and Spark SQL).

``build_tables(engine, as_of)`` runs them over three inputs the engine holds as tables:

* ``exp``: one row per expense (id, tenant_id, employee_id, vendor_id (-1 = none), item_id,
  category_id, did (the description's id), industry, department, day (days since epoch),
  amount, ...);
* ``desc_term(did, term)``: each distinct description's terms (``featurespec.tokenize``);
* ``item_term(item_id, term)``: each item's name terms (``featurespec.item_terms``).

The window is ``[as_of - 365 d, as_of)``: an expense dated ``as_of`` or later never
contributes. An ``Engine`` runs a statement into a temporary table, returns a query's rows as
Arrow, and takes a small Arrow table (the vocabulary). The statements are written in the SQL
both engines read alike, so there is one definition of each feature, not one per engine:
``count(*) FILTER (WHERE ...)``, ``chr(1) || ...``, ``any_value``, ``stddev_samp``, window
sums and ``row_number()`` mean the same in DuckDB and Spark 4; fractional constants are
written as DOUBLE (``_double``) and ``greatest`` takes operands of one type, the two places
where the engines' type rules differ.
"""

from __future__ import annotations

import logging
import time
from datetime import date
from typing import Protocol

import numpy as np
import pyarrow as pa

from rankswap import featurespec as fs
from rankswap_training.features import WINDOW_DAYS

log = logging.getLogger(__name__)

TERM_SMOOTHING = 2.0
"""share = n(term, x) / (n(term) + smoothing): rare terms count less."""
INPUTS = {
    "exp": (
        "id",
        "tenant_id",
        "employee_id",
        "vendor_id",
        "item_id",
        "category_id",
        "did",
        "industry",
        "department",
        "day",
        "amount",
    ),
    "desc_term": ("did", "term"),
    "item_term": ("item_id", "term"),
}
"""The inputs and the columns the definitions read of each."""


class Engine(Protocol):
    """What the feature definitions need of an engine."""

    def temp(self, name: str, sql: str) -> None:
        """``sql``'s rows as the temporary table ``name`` (replacing one of that name)."""

    def arrow(self, sql: str) -> pa.Table:
        """``sql``'s rows."""

    def register(self, name: str, table: pa.Table) -> None:
        """``table`` as the temporary table ``name``."""

    def drop(self, name: str) -> None:
        """Drop the temporary table ``name`` if it exists."""


def _double(x: float) -> str:
    """A DOUBLE literal: Spark reads ``2.0`` as a DECIMAL, and a division by a DECIMAL keeps
    only 6 decimal places there."""
    return f"CAST({float(x)!r} AS DOUBLE)"


def window_sql(end: int) -> str:
    """The window's expenses (``h``): ``age`` in days before the as-of, ``la`` = ln(1 + amount)."""
    return f"""
        SELECT id, tenant_id, employee_id, vendor_id, item_id, category_id, did,
               industry, department, day, {end} - day AS age,
               ln(1 + greatest(amount, CAST(0 AS DOUBLE))) AS la
        FROM exp WHERE day < {end} AND day >= {end - WINDOW_DAYS}
        """


def table_sql(end: int) -> dict[str, str]:
    """Every feature table but the term tables, as a query over ``h``: ``a`` (and ``b`` for a
    pair key) plus the table's columns (``featurespec.TABLES``)."""
    out = {
        "item": """
            WITH t90 AS (SELECT tenant_id, count(*) FILTER (WHERE age <= 90) AS n
                         FROM h GROUP BY tenant_id),
                 u AS (SELECT item_id, count(DISTINCT employee_id) AS n
                       FROM h WHERE age <= 90 GROUP BY item_id),
                 g AS (SELECT item_id, min(tenant_id) AS tenant_id,
                              count(*) FILTER (WHERE age <= 30) AS cnt_30d,
                              count(*) FILTER (WHERE age <= 90) AS cnt_90d,
                              count(*) AS cnt_365d, max(day) AS last_day,
                              avg(la) AS amt_mean, coalesce(stddev_samp(la), 0) AS amt_std
                       FROM h GROUP BY item_id)
            SELECT g.item_id AS a, g.cnt_30d, g.cnt_90d, g.cnt_365d,
                   g.cnt_90d / greatest(coalesce(t90.n, 1), 1) AS share_90d,
                   coalesce(u.n, 0) AS n_users_90d, g.last_day, g.amt_mean, g.amt_std
            FROM g LEFT JOIN t90 USING (tenant_id) LEFT JOIN u USING (item_id)
            """,
        "emp_item": """
            WITH g AS (SELECT employee_id, item_id, count(*) AS cnt_365d, max(day) AS last_day,
                              max(id) AS last_id FROM h GROUP BY employee_id, item_id)
            SELECT employee_id AS a, item_id AS b, cnt_365d,
                   cnt_365d / sum(cnt_365d) OVER (PARTITION BY employee_id) AS share_365d,
                   last_day,
                   row_number() OVER (PARTITION BY employee_id ORDER BY last_id DESC)
                       AS recency_rank
            FROM g
            """,
        "vendor_item": """
            WITH g AS (SELECT vendor_id, item_id, count(*) AS cnt_365d, max(day) AS last_day
                       FROM h WHERE vendor_id >= 0 GROUP BY vendor_id, item_id)
            SELECT vendor_id AS a, item_id AS b, cnt_365d,
                   cnt_365d / sum(cnt_365d) OVER (PARTITION BY vendor_id) AS share_365d, last_day
            FROM g
            """,
        "employee": "SELECT employee_id AS a, count(*) AS cnt_365d FROM h GROUP BY employee_id",
        "vendor": "SELECT vendor_id AS a, count(*) AS cnt_365d FROM h WHERE vendor_id >= 0 "
        "GROUP BY vendor_id",
        "category": """
            WITH t90 AS (SELECT tenant_id, count(*) FILTER (WHERE age <= 90) AS n
                         FROM h GROUP BY tenant_id),
                 g AS (SELECT category_id, min(tenant_id) AS tenant_id,
                              count(*) FILTER (WHERE age <= 90) AS cnt_90d,
                              avg(la) AS amt_mean, coalesce(stddev_samp(la), 0) AS amt_std
                       FROM h GROUP BY category_id)
            SELECT g.category_id AS a, g.cnt_90d / greatest(coalesce(t90.n, 1), 1) AS share_90d,
                   g.amt_mean, g.amt_std
            FROM g LEFT JOIN t90 USING (tenant_id)
            """,
    }
    for name, who, cond in (
        ("emp_cat", "employee_id", "TRUE"),
        ("vendor_cat", "vendor_id", "vendor_id >= 0"),
    ):
        out[name] = f"""
            WITH g AS (SELECT {who}, category_id, count(*) AS n FROM h WHERE {cond}
                       GROUP BY {who}, category_id)
            SELECT {who} AS a, category_id AS b,
                   n / sum(n) OVER (PARTITION BY {who}) AS share_365d
            FROM g
            """
    return out


def term_rows_sql(end: int) -> dict[str, str]:
    """The vocabulary's sources: ``tc_rows`` (each window expense's context terms with its
    category) and ``et_rows`` (each employee's recent item terms, weighted by a half-life)."""
    half_life = _double(fs.EMP_TERM_HALF_LIFE_DAYS)
    recent = end - fs.TERM_ITEM_DAYS
    return {
        "tc_rows": """
            SELECT h.tenant_id, t.term, h.category_id FROM h JOIN desc_term t USING (did)
            UNION ALL
            SELECT tenant_id, chr(1) || 'i:' || industry, category_id FROM h WHERE industry <> ''
            UNION ALL
            SELECT tenant_id, chr(1) || 'd:' || department, category_id FROM h
            WHERE department <> ''
            """,
        "et_rows": f"""
            WITH r AS (SELECT employee_id, item_id, pow(0.5, ({end} - day) / {half_life}) AS w
                       FROM exp WHERE day < {end} AND day >= {recent}),
                 tot AS (SELECT employee_id, sum(w) AS total FROM r GROUP BY employee_id)
            SELECT r.employee_id, it.term, sum(r.w) / any_value(tot.total) AS share
            FROM r JOIN item_term it USING (item_id) JOIN tot USING (employee_id)
            GROUP BY r.employee_id, it.term
            """,
    }


VOCAB_SQL = "SELECT DISTINCT term FROM tc_rows UNION SELECT DISTINCT term FROM et_rows"


def term_table_sql(end: int) -> dict[str, str]:
    """The term tables, over ``tc_rows``, ``et_rows`` and ``vocab(term, tid)``."""
    recent = end - fs.TERM_ITEM_DAYS
    return {
        "term_cat": f"""
            WITH g AS (SELECT tenant_id, term, category_id, count(*) AS n FROM tc_rows
                       GROUP BY tenant_id, term, category_id)
            SELECT v.tid AS a, g.category_id AS b,
                   g.n / (sum(g.n) OVER (PARTITION BY g.tenant_id, g.term) + {_double(TERM_SMOOTHING)})
                       AS share
            FROM g JOIN vocab v USING (term)
            """,
        "term_item": f"""
            WITH g AS (SELECT h.tenant_id, t.term, h.item_id, count(*) AS n
                       FROM h JOIN desc_term t USING (did) WHERE h.day >= {recent}
                       GROUP BY h.tenant_id, t.term, h.item_id)
            SELECT v.tid AS a, g.item_id AS b,
                   g.n / (sum(g.n) OVER (PARTITION BY g.tenant_id, g.term) + {_double(TERM_SMOOTHING)})
                       AS share
            FROM g JOIN vocab v USING (term)
            """,
        "emp_term": "SELECT e.employee_id AS a, v.tid AS b, e.share "
        "FROM et_rows e JOIN vocab v USING (term)",
    }


_TEMP = ("h", "tc_rows", "et_rows", "vocab")


def build_tables(engine: Engine, as_of: date) -> fs.FeatureTables:
    """Feature tables as of ``as_of``: aggregates of expenses dated in
    ``[as_of - 365 d, as_of)`` (never on or after ``as_of``); ``TABLES`` of featurespec."""
    end = fs.to_day(as_of)
    t0 = time.perf_counter()
    total = len(fs.TABLES)

    def built(name: str, table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # one line per table: on Spark each is seconds of planning and scheduling
        rows = len(table["key"])
        took = time.perf_counter() - t0
        log.info(
            "feature table %s: %s rows (%d of %d, %.1fs)",
            name,
            f"{rows:,}",
            len(tables) + 1,
            total,
            took,
        )
        return table

    tables: dict[str, dict[str, np.ndarray]] = {}
    try:
        engine.temp("h", window_sql(end))
        for name, sql in table_sql(end).items():
            tables[name] = built(name, arrays(name, engine.arrow(sql)))
        for name, sql in term_rows_sql(end).items():
            engine.temp(name, sql)
        vocab = sorted(engine.arrow(VOCAB_SQL).column(0).to_pylist())
        engine.register(
            "vocab",
            pa.table(
                {
                    "term": pa.array(vocab, pa.string()),
                    "tid": pa.array(np.arange(len(vocab), dtype=np.int64)),
                }
            ),
        )
        for name, sql in term_table_sql(end).items():
            tables[name] = built(name, arrays(name, engine.arrow(sql)))
    finally:
        for tmp in _TEMP:
            engine.drop(tmp)
    return fs.FeatureTables.from_arrays(as_of, tables, vocab)


def arrays(name: str, result: pa.Table) -> dict[str, np.ndarray]:
    """One table's rows as arrays: ``key`` (``a``, or the pair key of ``a`` and ``b``), ``s``
    when the query has it (the snapshot of each row: ``snapshots``) and the table's columns
    as float32."""
    a = result.column("a").to_numpy().astype(np.int64)
    if "b" in result.column_names:
        keys = fs.pair_key(a, result.column("b").to_numpy().astype(np.int64))
    else:
        keys = a
    out: dict[str, np.ndarray] = {"key": keys}
    if "s" in result.column_names:
        out["s"] = result.column("s").to_numpy().astype(np.int64)
    for col in fs.TABLES[name]:
        out[col] = result.column(col).to_numpy().astype(np.float32)
    return out
