"""The product database: schema (SQLAlchemy Core) and access for training and serving.

Public names: ``ProductDB``, the tables in ``schema``, and the error hierarchy
(``ProductDBError`` > ``UnknownTenant``, ``DatabaseUnavailable``, ``SchemaMissing``).
SQLite file URLs are the embedded default; ``postgresql+psycopg://`` URLs are accepted.
"""

from rankswap.productdb import schema
from rankswap.productdb.db import ProductDB
from rankswap.productdb.errors import (
    DatabaseUnavailable,
    ProductDBError,
    SchemaMissing,
    UnknownTenant,
)

__all__ = [
    "DatabaseUnavailable",
    "ProductDB",
    "ProductDBError",
    "SchemaMissing",
    "UnknownTenant",
    "schema",
]
