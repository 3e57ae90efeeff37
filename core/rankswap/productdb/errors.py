"""Errors of the product DB access layer.

ProductDBError
├── UnknownTenant        the tenant id is not in ``tenants``
├── DatabaseUnavailable  cannot connect / the database went away (check the URL, the server)
└── SchemaMissing        connected, but the rankswap tables are not there (run ``create_schema``)
"""

from __future__ import annotations


class ProductDBError(Exception):
    """Base of every product DB error; the message is one line and says what to do."""


class UnknownTenant(ProductDBError):
    """The tenant id does not exist in the product DB."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"unknown tenant {tenant_id!r}")
        self.tenant_id = tenant_id


class DatabaseUnavailable(ProductDBError):
    """The product DB cannot be reached (connection refused, missing SQLite file, ...)."""


class SchemaMissing(ProductDBError):
    """The database is reachable but has no rankswap tables."""
