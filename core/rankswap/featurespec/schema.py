"""What the feature artifact holds and what the model reads.

The schema version, the numeric and categorical features in model column order, the tables
with their value columns, the documented defaults for keys a table does not hold, and the
column runs that ``assemble`` writes with one slice each. Changing the meaning of any feature
or table column bumps ``FEATURE_SCHEMA_VERSION``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Final

import numpy as np
import numpy.typing as npt

FEATURE_SCHEMA_VERSION: Final = "1.1.0"

EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
DAYS_NEVER: Final = 3650.0
"""Documented default for every ``*_days_since_use`` feature when there is no use on record."""
RANK_NEVER: Final = 1000.0
"""Documented default for ``emp_item_recency_rank`` when the employee never used the item."""
MAX_TERMS: Final = 16
"""At most this many description terms (after de-duplication) are looked up per context."""

NUMERIC_FEATURES: Final[tuple[str, ...]] = (
    # context (live, per request)
    "log_amount",
    "log_n_candidates",
    # candidate (live, from the product DB)
    "item_age_days",
    # item table
    "item_cnt_30d",
    "item_cnt_90d",
    "item_cnt_365d",
    "item_share_90d",
    "item_n_users_90d",
    "item_days_since_use",
    "item_amount_z",
    # employee x item / vendor x item
    "emp_item_cnt_365d",
    "emp_item_share_365d",
    "emp_item_days_since_use",
    "emp_item_recency_rank",
    "vendor_item_cnt_365d",
    "vendor_item_share_365d",
    "vendor_item_days_since_use",
    # context-level volume (calibrates the shares above)
    "emp_cnt_365d",
    "vendor_cnt_365d",
    # category level: give brand-new items signal through their category
    "emp_cat_share_365d",
    "vendor_cat_share_365d",
    "cat_share_90d",
    "cat_amount_z",
    "desc_cat_mean",
    "desc_cat_max",
    "industry_cat_share",
    "dept_cat_share",
    # the expense vs the candidate item's own name and code (``itemtext``): live from the
    # product DB, so an item has them the second it exists
    "name_match_n",
    "name_match_share",
    "name_idf_cover",
    "vendor_name_idf_cover",
    "emp_name_share",
    "emp_name_rest",
    # the description's terms x item (``term_item`` table, the last TERM_ITEM_DAYS days)
    "desc_item_mean",
    "desc_item_max",
    # the description singles the item out within its category (``itemtext``)
    "name_alone_match",
)

CATEGORICAL_FEATURES: Final[tuple[str, ...]] = (
    "category",
    "account_code",
    "vendor_industry",
    "employee_department",
)

TABLES: Final[Mapping[str, tuple[str, ...]]] = {
    # key = item_id
    "item": (
        "cnt_30d",
        "cnt_90d",
        "cnt_365d",
        "share_90d",
        "n_users_90d",
        "last_day",
        "amt_mean",
        "amt_std",
    ),
    # key = (employee_id << 32) | item_id
    "emp_item": ("cnt_365d", "share_365d", "last_day", "recency_rank"),
    # key = (vendor_id << 32) | item_id
    "vendor_item": ("cnt_365d", "share_365d", "last_day"),
    # key = employee_id / vendor_id
    "employee": ("cnt_365d",),
    "vendor": ("cnt_365d",),
    # key = (employee_id << 32) | category_id, (vendor_id << 32) | category_id
    "emp_cat": ("share_365d",),
    "vendor_cat": ("share_365d",),
    # key = category_id
    "category": ("share_90d", "amt_mean", "amt_std"),
    # key = (term_id << 32) | category_id ; term ids index the sorted ``terms`` vocabulary
    "term_cat": ("share",),
    # key = (term_id << 32) | item_id ; P(item | term) within the tenant, last TERM_ITEM_DAYS
    "term_item": ("share",),
    # key = (employee_id << 32) | term_id ; the employee's recent items' name terms, weighted
    # by recency (half-life EMP_TERM_HALF_LIFE_DAYS), last TERM_ITEM_DAYS
    "emp_term": ("share",),
}
"""Every feature table, its value columns (float32). Each file also has a sorted int64 ``key``."""

TERMS_FILE: Final = "terms.arrow"
META_FILE: Final = "tables.json"
LOW32: Final = np.int64(0xFFFFFFFF)
AMT_STD_FLOOR: Final = 0.1
"""Floor of a standard deviation used as the divisor of an amount z-score."""
NEVER_DAY: Final = -1.0e9
"""``last_day`` of a key with no row: reads as "used infinitely long ago"."""

TERM_ITEM_DAYS: Final = 60
"""Window of the ``term_item`` table: expenses dated in ``[as_of - 60 d, as_of)``, short so that
a new item's first days of use weigh against the older items' history."""

EMP_TERM_HALF_LIFE_DAYS: Final = 2.0
"""Half-life of an expense's weight in the ``emp_term`` table: an employee who moved to a new
project a week ago weighs its items' names as much as all the older ones."""

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
OBJ = npt.NDArray[np.object_]


class FeatureSpecError(Exception):
    """Base of feature-definition errors (bad or incompatible feature tables, bad input)."""


class FeatureTablesError(FeatureSpecError):
    """A feature table folder is missing, incomplete or written with another schema version."""


def column_run(name: str, *following: str) -> int:
    """Index of ``name`` in ``NUMERIC_FEATURES``, checking that ``following`` come right after
    it (``assemble_batch`` writes such runs of columns with one slice assignment)."""
    start = NUMERIC_FEATURES.index(name)
    run = NUMERIC_FEATURES[start + 1 : start + 1 + len(following)]
    if run != following:
        raise AssertionError(f"NUMERIC_FEATURES: {following} must follow {name}")
    return start


C_LOG_AMOUNT: Final = column_run("log_amount")
C_LOG_NCAND: Final = column_run("log_n_candidates")
C_ITEM_AGE: Final = column_run("item_age_days")
C_ITEM: Final = column_run(
    "item_cnt_30d",
    "item_cnt_90d",
    "item_cnt_365d",
    "item_share_90d",
    "item_n_users_90d",
    "item_days_since_use",
    "item_amount_z",
)
C_EMP_ITEM: Final = column_run(
    "emp_item_cnt_365d",
    "emp_item_share_365d",
    "emp_item_days_since_use",
    "emp_item_recency_rank",
)
C_VENDOR_ITEM: Final = column_run(
    "vendor_item_cnt_365d", "vendor_item_share_365d", "vendor_item_days_since_use"
)
C_CTX: Final = column_run("emp_cnt_365d", "vendor_cnt_365d")
C_CAT: Final = column_run(
    "emp_cat_share_365d",
    "vendor_cat_share_365d",
    "cat_share_90d",
    "cat_amount_z",
    "desc_cat_mean",
    "desc_cat_max",
    "industry_cat_share",
    "dept_cat_share",
)
C_TEXT: Final = column_run(
    "name_match_n",
    "name_match_share",
    "name_idf_cover",
    "vendor_name_idf_cover",
    "emp_name_share",
    "emp_name_rest",
    "desc_item_mean",
    "desc_item_max",
    "name_alone_match",
)


def defaults_for(table: str, **values: float) -> F32:
    """Value per column of ``table`` for a key that is not in it (0 unless given)."""
    return np.array([values.get(c, 0.0) for c in TABLES[table]], dtype=np.float32)


ITEM_DEFAULTS: Final = defaults_for("item", last_day=NEVER_DAY, amt_std=1.0)
EMP_ITEM_DEFAULTS: Final = defaults_for("emp_item", last_day=NEVER_DAY, recency_rank=RANK_NEVER)
VENDOR_ITEM_DEFAULTS: Final = defaults_for("vendor_item", last_day=NEVER_DAY)
CATEGORY_DEFAULTS: Final = defaults_for("category", amt_std=1.0)
ZERO1: Final = np.zeros(1, dtype=np.float32)
