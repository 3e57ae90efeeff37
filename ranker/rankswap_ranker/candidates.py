"""The product DB as the ranker's candidate source, tolerant of a database that is down.

:class:`rankswap.productdb.ProductDB` refuses to be built while its database is unreachable
(a missing SQLite file, for instance). The ranker must start anyway, answer 503 while the
database is away and recover by itself, so the ProductDB is built on first use and again after
a failure to build it.
"""

from __future__ import annotations

import threading
from datetime import date

from rankswap import featurespec as fs
from rankswap.productdb import ProductDB


class LazyProductDB:
    def __init__(self, url: str) -> None:
        self.url = url
        self._db: ProductDB | None = None
        self._lock = threading.Lock()

    def _get(self) -> ProductDB:
        db = self._db
        if db is None:
            with self._lock:
                if self._db is None:
                    self._db = ProductDB(self.url)  # DatabaseUnavailable while it is down
                db = self._db
        return db

    def make_context(
        self,
        tenant_id: str,
        *,
        employee_id: int | None,
        vendor_id: int | None,
        description: str,
        amount: float,
        expense_date: date,
    ) -> fs.RankContext:
        return self._get().make_context(
            tenant_id,
            employee_id=employee_id,
            vendor_id=vendor_id,
            description=description,
            amount=amount,
            expense_date=expense_date,
        )

    def rank_inputs(
        self,
        tenant_id: str,
        *,
        employee_id: int | None,
        vendor_id: int | None,
        description: str,
        amount: float,
        expense_date: date,
        with_names: bool = True,
    ) -> tuple[fs.RankContext, fs.Candidates]:
        return self._get().rank_inputs(
            tenant_id,
            employee_id=employee_id,
            vendor_id=vendor_id,
            description=description,
            amount=amount,
            expense_date=expense_date,
            with_names=with_names,
        )

    def candidates(self, tenant_id: str, *, with_names: bool = True) -> fs.Candidates:
        return self._get().candidates(tenant_id, with_names=with_names)

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
