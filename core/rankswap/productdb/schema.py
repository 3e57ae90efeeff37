"""The product DB tables (SQLAlchemy Core). Documented in docs/DATA.md.

Integer surrogate keys everywhere except ``tenants`` so that serving can look features up with
numpy ``searchsorted`` on int64 keys. Item ids are global (unique across tenants) and below 2**31
(pair keys pack two ids into one int64). Timestamps are naive UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

# A tenant's categories (勘定科目 level): the unit that lets a brand-new item borrow signal.
categories = Table(
    "categories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Text, ForeignKey("tenants.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("account_code", Text, nullable=False),
    UniqueConstraint("tenant_id", "name", name="uq_categories_tenant_name"),
)

# A tenant's expense line items (内訳): the things being ranked.
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Text, ForeignKey("tenants.id"), nullable=False),
    Column("code", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("category_id", Integer, ForeignKey("categories.id"), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    UniqueConstraint("tenant_id", "code", name="uq_items_tenant_code"),
    Index("ix_items_tenant_active", "tenant_id", "active"),
)

employees = Table(
    "employees",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Text, ForeignKey("tenants.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("department", Text, nullable=False),
)

vendors = Table(
    "vendors",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Text, ForeignKey("tenants.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("industry", Text, nullable=False),
)

expenses = Table(
    "expenses",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Text, ForeignKey("tenants.id"), nullable=False),
    Column("employee_id", Integer, ForeignKey("employees.id"), nullable=False),
    Column("vendor_id", Integer, ForeignKey("vendors.id"), nullable=True),
    Column("description", Text, nullable=False),
    Column("amount", Float, nullable=False),
    Column("expense_date", Date, nullable=False),
    Column("item_id", Integer, ForeignKey("items.id"), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_expenses_date", "expense_date"),
    Index("ix_expenses_tenant_date", "tenant_id", "expense_date"),
)

TABLE_ORDER = (tenants, categories, items, employees, vendors, expenses)
"""Insert order that satisfies the foreign keys."""
