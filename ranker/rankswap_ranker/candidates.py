"""The product DB as the ranker's candidate source, tolerant of a database that is down.

:class:`rankswap.productdb.ProductDB` refuses to be built while its database is unreachable
(a missing SQLite file, for instance). The ranker must start anyway, answer 503 while the
database is away and recover by itself, so the ProductDB is built on first use and again after
a failure to build it.
"""

from __future__ import annotations

import threading

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

    def make_context(self, entered: fs.RankContext) -> fs.RankContext:
        return self._get().make_context(entered)

    def rank_inputs(
        self, entered: fs.RankContext, *, with_names: bool = True
    ) -> tuple[fs.RankContext, fs.Candidates]:
        return self._get().rank_inputs(entered, with_names=with_names)

    def candidates(self, tenant_id: str, *, with_names: bool = True) -> fs.Candidates:
        return self._get().candidates(tenant_id, with_names=with_names)

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
