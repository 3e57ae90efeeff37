"""The out-of-core columnar engine of the pipelines: the expense history in DuckDB.

``HistoryDB`` holds the expenses (joined with their item's category, the employee's department
and the vendor's industry and name), each distinct description's terms and each item's name
terms in a DuckDB database in a temporary folder, with a memory limit: what does not fit is
spilled to disk, so the history is bounded by the disk, not by memory. It is filled either
from the product DB in Arrow record batches (``from_product_db``: ADBC drivers, no Python row
tuples) or from an in-memory ``History`` (tests, hand-made histories).

``build_tables(as_of)`` runs the feature definitions (``featuresql``) over the window
``[as_of - 365 d, as_of)`` (point in time: an expense dated ``as_of`` or later never
contributes) and returns ``FeatureTables``. ``history_of(rows)`` brings only the rows a
training step needs into pandas (``features.History``).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from rankswap import featurespec as fs
from rankswap.productdb import ProductDB
from rankswap_training import arrowread, featuresql
from rankswap_training.features import History

log = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT = "2GB"
PROGRESS_EVERY_S = 10.0

I64 = npt.NDArray[np.int64]

_EXP_COLUMNS = (
    "id, tenant_id, employee_id, vendor_id, item_id, description, amount, expense_date, created_at"
)


class HistoryDB:
    """An expense history in DuckDB (see the module docstring). Use as a context manager or
    call ``close()``: it owns a temporary folder."""

    def __init__(self, *, memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int | None = None):
        import duckdb

        self._tmp = tempfile.TemporaryDirectory(prefix="rankswap-history-")
        path = Path(self._tmp.name)
        config: dict[str, Any] = {
            "memory_limit": memory_limit,
            "temp_directory": str(path / "spill"),
        }
        if threads is not None:
            config["threads"] = threads
        self.con = duckdb.connect(str(path / "history.duckdb"), config=config)
        self.items = pd.DataFrame()

    def __enter__(self) -> HistoryDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()
        self._tmp.cleanup()

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_product_db(
        cls,
        db: ProductDB,
        *,
        before: date,
        since: date | None = None,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
    ) -> HistoryDB:
        """Expenses dated in ``[since, before)`` and every item created before ``before``,
        read in Arrow record batches (``arrowread``) and streamed into DuckDB."""
        out = cls(memory_limit=memory_limit)
        try:
            where = f"expense_date < '{before.isoformat()}'"
            if since is not None:
                where += f" AND expense_date >= '{since.isoformat()}'"
            sql = f"SELECT {_EXP_COLUMNS} FROM expenses WHERE {where}"
            small = {
                name: arrowread.read_table(db, f"SELECT {cols} FROM {name}")
                for name, cols in (
                    ("items", "id, tenant_id, code, name, category_id, created_at, active"),
                    ("categories", "id, name, account_code"),
                    ("employees", "id, department"),
                    ("vendors", "id, name, industry"),
                )
            }
            reader = _progress(arrowread.record_batches(db, sql), "reading expenses")
            out._load(reader, small, before)
        except BaseException:
            out.close()
            raise
        return out

    @classmethod
    def from_history(
        cls, history: History, *, memory_limit: str = DEFAULT_MEMORY_LIMIT
    ) -> HistoryDB:
        """An in-memory ``History`` (its expenses, terms and items) loaded as is."""
        out = cls(memory_limit=memory_limit, threads=1)
        try:
            e = history.expenses
            exp = pa.table(
                {
                    "id": pa.array(e["id"].to_numpy(np.int64)),
                    "tenant_id": pa.array(e["tenant_id"].astype(str).tolist(), pa.string()),
                    "employee_id": pa.array(e["employee_id"].to_numpy(np.int64)),
                    "vendor_id": pa.array(e["vendor_id"].to_numpy(np.int64)),
                    "item_id": pa.array(e["item_id"].to_numpy(np.int64)),
                    "category_id": pa.array(e["category_id"].to_numpy(np.int64)),
                    "description": pa.array(e["description"].astype(str).tolist(), pa.string()),
                    "amount": pa.array(e["amount"].to_numpy(np.float64)),
                    "day": pa.array(e["day"].to_numpy(np.int64)),
                    "created_s": pa.array(e["created_s"].to_numpy(np.int64)),
                    "department": pa.array(e["department"].astype(str).tolist(), pa.string()),
                    "industry": pa.array(e["industry"].astype(str).tolist(), pa.string()),
                    "vendor_name": pa.array(e["vendor_name"].astype(str).tolist(), pa.string()),
                }
            )
            out.con.register("exp_in", exp)
            out.con.execute("CREATE TABLE exp AS SELECT * FROM exp_in")
            out.con.unregister("exp_in")
            out.items = history.items
            out._derive_terms()
        except BaseException:
            out.close()
            raise
        return out

    def _load(self, reader: pa.RecordBatchReader, small: dict[str, pa.Table], before: date) -> None:
        con = self.con
        for name, table in small.items():
            con.register(f"src_{name}", table)
        con.register("src_expenses", reader)
        t0 = time.perf_counter()
        con.execute(
            """
            CREATE TABLE exp AS
            SELECT e.id::BIGINT AS id, e.tenant_id::VARCHAR AS tenant_id,
                   e.employee_id::BIGINT AS employee_id,
                   coalesce(e.vendor_id, -1)::BIGINT AS vendor_id, e.item_id::BIGINT AS item_id,
                   i.category_id::BIGINT AS category_id,
                   coalesce(e.description, '')::VARCHAR AS description,
                   e.amount::DOUBLE AS amount,
                   (CAST(e.expense_date AS DATE) - DATE '1970-01-01')::BIGINT AS day,
                   CAST(epoch(CAST(e.created_at AS TIMESTAMP)) AS BIGINT) AS created_s,
                   coalesce(emp.department, '')::VARCHAR AS department,
                   coalesce(v.industry, '')::VARCHAR AS industry,
                   coalesce(v.name, '')::VARCHAR AS vendor_name
            FROM src_expenses e
            JOIN src_items i ON i.id = e.item_id
            JOIN src_employees emp ON emp.id = e.employee_id
            LEFT JOIN src_vendors v ON v.id = e.vendor_id
            """
        )
        con.unregister("src_expenses")
        n = self.count()
        log.info("history: %s expenses in DuckDB in %.1fs", f"{n:,}", time.perf_counter() - t0)
        midnight = (fs.to_day(before)) * 86400
        items = con.execute(
            f"""
            SELECT i.id::BIGINT AS id, i.tenant_id::VARCHAR AS tenant_id,
                   i.code::VARCHAR AS code, i.name::VARCHAR AS name,
                   i.category_id::BIGINT AS category_id, c.name::VARCHAR AS category,
                   c.account_code::VARCHAR AS account_code,
                   CAST(epoch(CAST(i.created_at AS TIMESTAMP)) AS BIGINT) AS created_s,
                   CAST(i.active AS BOOLEAN) AS active
            FROM src_items i JOIN src_categories c ON c.id = i.category_id
            WHERE CAST(epoch(CAST(i.created_at AS TIMESTAMP)) AS BIGINT) < {midnight}
            ORDER BY i.id
            """
        ).df()
        for name in small:
            con.unregister(f"src_{name}")
        self.items = pd.DataFrame(
            {
                "id": items["id"].to_numpy(np.int64),
                "tenant_id": items["tenant_id"].to_numpy(object),
                "code": items["code"].to_numpy(object),
                "name": items["name"].to_numpy(object),
                "category_id": items["category_id"].to_numpy(np.int64),
                "category": items["category"].to_numpy(object),
                "account_code": items["account_code"].astype(str).to_numpy(object),
                "created_s": items["created_s"].to_numpy(np.int64),
                "active": items["active"].to_numpy(bool),
            }
        )
        self._derive_terms()

    def _derive_terms(self) -> None:
        """``desc_term(description, term)`` for every distinct description (tokenised once,
        in Python: text is the only per-value Python step) and ``item_term(item_id, term)``."""
        con = self.con
        t0 = time.perf_counter()
        con.execute(
            "CREATE OR REPLACE TABLE descs AS SELECT description, "
            "(row_number() OVER ())::BIGINT AS did FROM (SELECT DISTINCT description FROM exp)"
        )
        table = con.sql("SELECT did, description FROM descs").to_arrow_table()
        descs: list[str] = table.column("description").to_pylist()
        dids: list[int] = table.column("did").to_pylist()
        d_col: list[int] = []
        t_col: list[str] = []
        for did, d in zip(dids, descs, strict=True):
            toks = fs.tokenize(d)
            d_col.extend([did] * len(toks))
            t_col.extend(toks)
        con.register("desc_term_in", pa.table({"did": d_col, "term": t_col}, schema=_TERM_SCHEMA))
        con.execute("CREATE OR REPLACE TABLE desc_term AS SELECT * FROM desc_term_in")
        con.unregister("desc_term_in")
        t1 = time.perf_counter()
        # integer description ids (joins on strings cost most of a snapshot); stored by tenant
        # and day (a query of a few tenants reads their row groups only: DuckDB's min/max zone
        # maps); ``pos``: the row number in (day, id) order, numbered once here so that reading
        # a column or sampled rows in that order sorts nothing but the sample
        con.execute(
            "CREATE TABLE exp_sorted AS SELECT e.*, d.did, "
            "(row_number() OVER (ORDER BY e.day, e.id) - 1)::BIGINT AS pos FROM exp e "
            "JOIN descs d USING (description) ORDER BY e.tenant_id, e.day, e.id"
        )
        con.execute("DROP TABLE exp")
        con.execute("ALTER TABLE exp_sorted RENAME TO exp")
        t2 = time.perf_counter()
        it = self.items
        i_col: list[int] = []
        it_col: list[str] = []
        for i, c, n in zip(
            it["id"].to_numpy(np.int64).tolist(), it["code"], it["name"], strict=True
        ):
            terms = fs.item_terms(str(c), str(n))
            i_col.extend([i] * len(terms))
            it_col.extend(terms)
        con.register(
            "item_term_in",
            pa.table(
                {"item_id": pa.array(i_col, pa.int64()), "term": pa.array(it_col, pa.string())}
            ),
        )
        con.execute("CREATE OR REPLACE TABLE item_term AS SELECT * FROM item_term_in")
        con.unregister("item_term_in")
        log.info(
            "terms: %s distinct descriptions tokenised in %.1fs; history stored by tenant and "
            "day in %.1fs; %s items' terms in %.1fs",
            f"{len(descs):,}",
            t1 - t0,
            t2 - t1,
            f"{len(it):,}",
            time.perf_counter() - t2,
        )

    # ------------------------------------------------------------------ reading

    def count(self) -> int:
        return int(self.con.sql("SELECT count(*) FROM exp").fetchall()[0][0])

    def days(self) -> I64:
        """Every expense's day, in row order (day, id)."""
        return self._in_order("day")

    def item_ids(self) -> I64:
        return self._in_order("item_id")

    def _in_order(self, column: str) -> I64:
        """An integer column in (day, id) order: placed by ``pos``, no sort."""
        table = self.con.sql(f"SELECT pos, {column} FROM exp").to_arrow_table()
        out: I64 = np.empty(table.num_rows, dtype=np.int64)
        out[table.column(0).to_numpy()] = table.column(1).to_numpy()
        return out

    @property
    def first_day(self) -> date | None:
        first = self.con.sql("SELECT min(day) FROM exp").fetchall()[0][0]
        if first is None:
            return None
        return date.fromordinal(int(first) + fs.EPOCH_ORDINAL)

    def history_of(self, rows: I64) -> History:
        """The expenses at ``rows`` (positions in (day, id) order, ascending) as a pandas
        ``History`` whose row ``k`` is ``rows[k]``, with their terms and every item."""
        con = self.con
        con.register("pick", pa.table({"pos": pa.array(np.asarray(rows, np.int64))}))
        frame = con.execute(
            """
            SELECT e.* EXCLUDE (pos, did) FROM exp e SEMI JOIN pick USING (pos) ORDER BY e.pos
            """
        ).df()
        con.unregister("pick")
        exp = pd.DataFrame(
            {
                "id": frame["id"].to_numpy(np.int64),
                "tenant_id": frame["tenant_id"].to_numpy(object),
                "employee_id": frame["employee_id"].to_numpy(np.int64),
                "vendor_id": frame["vendor_id"].to_numpy(np.int64),
                "item_id": frame["item_id"].to_numpy(np.int64),
                "category_id": frame["category_id"].to_numpy(np.int64),
                "description": frame["description"].to_numpy(object),
                "amount": frame["amount"].to_numpy(np.float64),
                "day": frame["day"].to_numpy(np.int64),
                "created_s": frame["created_s"].to_numpy(np.int64),
                "department": frame["department"].to_numpy(object),
                "industry": frame["industry"].to_numpy(object),
                "vendor_name": frame["vendor_name"].to_numpy(object),
            }
        )
        tok = [fs.tokenize(str(d)) for d in exp["description"].tolist()]
        lens = np.array([len(t) for t in tok], dtype=np.int64)
        terms = pd.DataFrame(
            {
                "row": np.repeat(np.arange(len(exp), dtype=np.int64), lens),
                "term": np.array([w for t in tok for w in t], dtype=object),
            }
        )
        return History(expenses=exp, terms=terms, items=self.items)

    # ------------------------------------------------------------------ features

    def build_tables(self, as_of: date) -> fs.FeatureTables:
        """Feature tables as of ``as_of``: aggregates of expenses dated in
        ``[as_of - 365 d, as_of)`` (never on or after ``as_of``); the definitions of
        ``featuresql``. (``model train`` builds its many snapshots in one windowed pass:
        ``snapshots``.)"""
        return featuresql.build_tables(DuckEngine(self.con), as_of)

    def _query(self, name: str, sql: str) -> dict[str, np.ndarray]:
        """One table's rows (``featuresql.arrays``)."""
        return featuresql.arrays(name, self.con.sql(sql).to_arrow_table())

    def export_inputs(self, directory: Path) -> dict[str, Path]:
        """The feature definitions' three inputs (``exp``, ``desc_term``, ``item_term``) as
        Parquet files in ``directory``, for another engine to read (``sparkengine``)."""
        directory.mkdir(parents=True, exist_ok=True)
        out: dict[str, Path] = {}
        for name in featuresql.INPUTS:
            path = directory / f"{name}.parquet"
            self.con.execute(f"COPY {name} TO '{path}' (FORMAT parquet)")
            out[name] = path
        return out


class DuckEngine:
    """``featuresql.Engine`` on a DuckDB connection."""

    def __init__(self, con: Any):
        self.con = con

    def temp(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def arrow(self, sql: str) -> pa.Table:
        table: pa.Table = self.con.sql(sql).to_arrow_table()
        return table

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(f"{name}_in", table)
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_in")
        finally:
            self.con.unregister(f"{name}_in")

    def drop(self, name: str) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {name}")


_TERM_SCHEMA = pa.schema([("did", pa.int64()), ("term", pa.string())])


def _progress(reader: pa.RecordBatchReader, what: str) -> pa.RecordBatchReader:
    """``reader`` passed through, with a progress line (rows, rate) every ``PROGRESS_EVERY_S``."""

    def batches() -> Iterator[pa.RecordBatch]:
        t0 = last = time.perf_counter()
        rows = 0
        for batch in reader:
            rows += batch.num_rows
            now = time.perf_counter()
            if now - last >= PROGRESS_EVERY_S:
                last = now
                log.info("%s: %s rows (%s rows/s)", what, f"{rows:,}", f"{rows / (now - t0):,.0f}")
            yield batch
        took = time.perf_counter() - t0
        log.info(
            "%s: %s rows in %.1fs (%s rows/s)",
            what,
            f"{rows:,}",
            took,
            f"{rows / max(took, 1e-9):,.0f}",
        )

    return pa.RecordBatchReader.from_batches(reader.schema, batches())
