"""The product DB read in Arrow record batches (ADBC drivers), for the pipelines' bulk reads,
and written from Arrow tables, for the data generator's bulk writes.

SQLAlchemy and the DBAPI drivers take and return one Python tuple per row, which costs more
than the query at millions of rows; the ADBC drivers for SQLite and PostgreSQL bind and return
Arrow columns. Errors become the product DB's own (``DatabaseUnavailable``,
``ProductDBError``), one line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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


class Appender:
    """Appends Arrow tables to product DB tables on a connection of its own (``appender``)."""

    def __init__(self, db: ProductDB, conn: Any) -> None:
        self._db, self._conn, self._cur = db, conn, conn.cursor()

    def append(self, name: str, table: pa.Table, *, temporary: bool = False) -> None:
        """Append ``table`` to the table ``name`` (a temporary table of this connection when
        ``temporary``) and commit: one transaction per call."""
        with _errors(self._db):
            self._cur.adbc_ingest(name, table, mode="append", temporary=temporary)
            self._commit()

    def execute(self, sql: str) -> None:
        """One statement on this connection (which sees its temporary tables), committed."""
        with _errors(self._db):
            self._cur.execute(sql)
            self._commit()

    def _commit(self) -> None:
        if self._db.dialect != "sqlite":  # SQLite's connection commits each statement
            self._conn.commit()


@contextlib.contextmanager
def appender(db: ProductDB) -> Iterator[Appender]:
    """An ``Appender`` on a connection of its own; SQLite's is unsynchronised
    (``synchronous=OFF``: a crash may lose the last commits, which a bulk load restarts) and
    keeps temporary tables in files, not in memory."""
    conn = _connect(db, write=True)
    try:
        out = Appender(db, conn)
        if db.dialect == "sqlite":
            out.execute("PRAGMA synchronous=OFF")
            out.execute("PRAGMA temp_store=FILE")
        yield out
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
