"""The product DB read in Arrow record batches (ADBC drivers), for the pipelines' bulk reads,
and written from Arrow tables, for the data generator's bulk writes.

SQLAlchemy and the DBAPI drivers take and return one Python tuple per row, which costs more
than the query at millions of rows; the ADBC drivers for SQLite and PostgreSQL bind and return
Arrow columns. Errors become the product DB's own (``DatabaseUnavailable``,
``ProductDBError``), one line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from rankswap.productdb import DatabaseUnavailable, ProductDB, ProductDBError

BATCH_ROWS = "65536"


def record_batches(db: ProductDB, sql: str) -> pa.RecordBatchReader:
    """The rows of ``sql`` as a stream of record batches; the connection closes when the stream
    is exhausted (or garbage-collected)."""
    conn = _connect(db)
    try:
        cur = conn.cursor()
        with _errors(db):
            if db.dialect == "sqlite":  # the driver's batches (its type inference: per batch)
                cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": BATCH_ROWS})
            cur.execute(sql)
            reader = cur.fetch_record_batch()
    except BaseException:
        conn.close()
        raise

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            with _errors(db):
                yield from reader
        finally:
            cur.close()
            conn.close()

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def read_table(db: ProductDB, sql: str) -> pa.Table:
    """All rows of ``sql`` as one Arrow table (for the small tables)."""
    return record_batches(db, sql).read_all()


@contextlib.contextmanager
def appender(db: ProductDB) -> Iterator[Callable[[str, pa.Table], None]]:
    """A function that appends an Arrow table to a product DB table and commits (one
    transaction per call), on a connection of its own; SQLite's is unsynchronised
    (``synchronous=OFF``: a crash may lose the last commits, which a bulk load restarts)."""
    conn = _connect(db, write=True)
    try:
        cur = conn.cursor()
        with _errors(db):
            if db.dialect == "sqlite":
                cur.execute("PRAGMA synchronous=OFF")

        def append(name: str, table: pa.Table) -> None:
            with _errors(db):
                cur.adbc_ingest(name, table, mode="append")
                if db.dialect != "sqlite":  # SQLite's connection commits each statement
                    conn.commit()

        yield append
        cur.close()
    finally:
        conn.close()


def _connect(db: ProductDB, *, write: bool = False) -> Any:
    url = db.engine.url
    with _errors(db):
        if db.dialect == "sqlite":
            import adbc_driver_sqlite.dbapi

            path = url.database or ""  # a file: URI (ProductDB opens files read-write, never
            if not path.startswith("file:"):  # creating them) or a plain path (create=True)
                path = Path(path).resolve().as_uri()
            if write:  # autocommit: the safety level cannot change inside a transaction
                return adbc_driver_sqlite.dbapi.connect(f"{path}?mode=rw", autocommit=True)
            return adbc_driver_sqlite.dbapi.connect(f"{path}?mode=ro")
        if db.dialect == "postgresql":
            import adbc_driver_postgresql.dbapi

            uri = url.set(drivername="postgresql").render_as_string(hide_password=False)
            return adbc_driver_postgresql.dbapi.connect(uri)
    raise ProductDBError(f"product DB {db.url}: no Arrow reader for dialect {db.dialect!r}")


@contextlib.contextmanager
def _errors(db: ProductDB) -> Iterator[None]:
    import adbc_driver_manager

    try:
        yield
    except adbc_driver_manager.OperationalError as exc:
        raise DatabaseUnavailable(f"product DB {db.url} unavailable: {_first_line(exc)}") from exc
    except adbc_driver_manager.Error as exc:
        raise ProductDBError(f"product DB {db.url}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
