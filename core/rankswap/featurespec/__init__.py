"""The one feature definition shared by training and serving (no train/serve skew).

Public surface (import from ``rankswap.featurespec``; the submodules are its seams):

* ``schema``: ``FEATURE_SCHEMA_VERSION``, ``NUMERIC_FEATURES``, ``CATEGORICAL_FEATURES``,
  ``TABLES``: what the feature artifact contains and what the model reads. Changing the
  meaning of any feature or table column bumps ``FEATURE_SCHEMA_VERSION``.
* ``terms``: the tokenizer and the integer keys (days, composite pair keys).
* ``inputs``: ``RankContext`` (one expense being filed), ``ContextBatch`` (many, columnar, for
  training), ``Candidates`` (a tenant's items, columnar numpy as read from the product DB) and
  ``ModelInput`` (what the ONNX model takes).
* ``tables``: ``FeatureTables``, the feature artifact's tables, memory-mapped Arrow IPC files,
  sorted int64 ``key`` column + float32 value columns; ``write`` (pipeline) and ``open``
  (serving).
* ``itemtext``: the features between the expense and each candidate's own name and code, and
  the description's terms x item (``term_item``); called by ``assembly``.
* ``assembly``: ``assemble_batch`` (many contexts x their candidates, training), fully
  vectorised (numpy ``searchsorted`` on sorted int64 composite keys, no Python loop over
  candidates).
* ``serving``: ``assemble`` (one context x its candidates, serving): ``assemble_batch``'s rows
  for that context bit for bit, from parts memoised per (candidate list, feature tables);
  ``assemble_with`` the same with another arithmetic (a ``Fill``): ``compiled_fill`` gives the
  compiled one (``kernels``, numba; ``KernelsUnavailable`` without numba), the same bits.

Keys: ``item`` = item id; pair tables use ``(a << 32) | b`` with both ids in ``[0, 2**31)``.
Days are integer days since 1970-01-01 (``date.toordinal() - EPOCH_ORDINAL``).
"""

from .assembly import assemble_batch
from .inputs import DERIVED_KEEP, Candidates, ContextBatch, ModelInput, RankContext
from .itemtext import ITEM_TEXT_FEATURES, item_terms
from .schema import (
    CATEGORICAL_FEATURES,
    DAYS_NEVER,
    EMP_TERM_HALF_LIFE_DAYS,
    EPOCH_ORDINAL,
    FEATURE_SCHEMA_VERSION,
    MAX_TERMS,
    META_FILE,
    NUMERIC_FEATURES,
    RANK_NEVER,
    TABLES,
    TERM_ITEM_DAYS,
    TERMS_FILE,
    FeatureSpecError,
    FeatureTablesError,
)
from .serving import (
    ExpenseParts,
    Fill,
    KernelsUnavailable,
    assemble,
    assemble_with,
    compiled_fill,
    fill_numpy,
)
from .tables import FeatureTables, Hits, Table
from .terms import department_term, industry_term, pair_key, to_day, tokenize

__all__ = [
    "CATEGORICAL_FEATURES",
    "DAYS_NEVER",
    "DERIVED_KEEP",
    "EMP_TERM_HALF_LIFE_DAYS",
    "EPOCH_ORDINAL",
    "FEATURE_SCHEMA_VERSION",
    "ITEM_TEXT_FEATURES",
    "MAX_TERMS",
    "META_FILE",
    "NUMERIC_FEATURES",
    "RANK_NEVER",
    "TABLES",
    "TERMS_FILE",
    "TERM_ITEM_DAYS",
    "Candidates",
    "ContextBatch",
    "ExpenseParts",
    "FeatureSpecError",
    "FeatureTables",
    "FeatureTablesError",
    "Fill",
    "Hits",
    "KernelsUnavailable",
    "ModelInput",
    "RankContext",
    "Table",
    "assemble",
    "assemble_batch",
    "assemble_with",
    "compiled_fill",
    "department_term",
    "fill_numpy",
    "industry_term",
    "item_terms",
    "pair_key",
    "to_day",
    "tokenize",
]
