"""The one feature definition shared by training and serving (no train/serve skew).

Public surface:

* ``FEATURE_SCHEMA_VERSION``, ``NUMERIC_FEATURES``, ``CATEGORICAL_FEATURES``, ``TABLES``:
  what the feature artifact contains and what the model reads. Changing the meaning of any
  feature or table column bumps ``FEATURE_SCHEMA_VERSION``.
* ``RankContext`` (one expense being filed) and ``ContextBatch`` (many, columnar, for training).
* ``Candidates``: a tenant's items, columnar numpy (as read from the product DB).
* ``FeatureTables``: the feature artifact's tables, memory-mapped Arrow IPC files, sorted int64
  ``key`` column + float32 value columns; ``write`` (pipeline) and ``open`` (serving).
* ``assemble`` (one context x its candidates, serving) and ``assemble_batch`` (many contexts x
  their candidates, training): the same code path, fully vectorised (numpy ``searchsorted`` on
  sorted int64 composite keys, no Python loop over candidates).

Keys: ``item`` = item id; pair tables use ``(a << 32) | b`` with both ids in ``[0, 2**31)``.
Days are integer days since 1970-01-01 (``date.toordinal() - EPOCH_ORDINAL``).
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.ipc as ipc

FEATURE_SCHEMA_VERSION: Final = "1.0.0"

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
}
"""Every feature table, its value columns (float32). Each file also has a sorted int64 ``key``."""

TERMS_FILE: Final = "terms.arrow"
META_FILE: Final = "tables.json"
_LOW32: Final = np.int64(0xFFFFFFFF)
_AMT_STD_FLOOR: Final = 0.1
_NEVER_DAY: Final = -1.0e9

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
OBJ = npt.NDArray[np.object_]


class FeatureSpecError(Exception):
    """Base of feature-definition errors (bad or incompatible feature tables, bad input)."""


class FeatureTablesError(FeatureSpecError):
    """A feature table folder is missing, incomplete or written with another schema version."""


# --------------------------------------------------------------------------------------------
# Text terms


_SPLIT = re.compile(r"[^\w]+", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\u30fc]")


def tokenize(text: str) -> list[str]:
    """Terms of a description: NFKC + lower case, split on non-word characters; runs that
    contain Japanese characters yield character bigrams (no dictionary needed), other runs yield
    the word. Order-preserving, de-duplicated, at most ``MAX_TERMS``."""
    norm = unicodedata.normalize("NFKC", text).lower()
    out: dict[str, None] = {}
    for word in _SPLIT.split(norm):
        if not word or word.isdigit():
            continue
        if _CJK.search(word):
            if len(word) == 1:
                out[word] = None
            for i in range(len(word) - 1):
                out[word[i : i + 2]] = None
        elif len(word) > 1:
            out[word] = None
    return list(out)[:MAX_TERMS]


def industry_term(industry: str) -> str:
    """The vocabulary entry standing for a vendor industry (in the ``term_cat`` table)."""
    return f"\x01i:{industry}"


def department_term(department: str) -> str:
    """The vocabulary entry standing for an employee department (in the ``term_cat`` table)."""
    return f"\x01d:{department}"


def to_day(d: date) -> int:
    """Integer days since 1970-01-01."""
    return d.toordinal() - EPOCH_ORDINAL


def pair_key(a: npt.ArrayLike, b: npt.ArrayLike) -> I64:
    """Composite int64 key ``(a << 32) | b`` for ids in ``[0, 2**31)``; negative a or b (unknown)
    yields -1, which no table contains."""
    a64 = np.asarray(a, dtype=np.int64)
    b64 = np.asarray(b, dtype=np.int64)
    key = (a64 << 32) | b64
    bad = (a64 < 0) | (b64 < 0)
    if bool(np.any(bad)):
        key = np.where(bad, np.int64(-1), key)
    return key


def _pk(a: I64, b: I64) -> I64:
    """``pair_key`` for b >= 0 (item / category ids): a negative ``a`` (unknown employee,
    vendor or term) gives a negative key, which matches no table row, so no fix-up is needed."""
    out: I64 = (a << 32) | b
    return out


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True, slots=True)
class RankContext:
    """One expense being filed: what the user entered plus attributes looked up for it."""

    tenant_id: str
    employee_id: int | None
    vendor_id: int | None
    description: str
    amount: float
    expense_date: date
    employee_department: str = ""
    vendor_industry: str = ""


@dataclass(frozen=True, slots=True)
class Candidates:
    """A tenant's candidate items, columnar (all arrays have the same length)."""

    item_ids: I64
    codes: OBJ
    names: OBJ
    category_ids: I64
    categories: OBJ
    account_codes: OBJ
    created_at: npt.NDArray[np.datetime64]  # datetime64[s], UTC
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """Arrays derived from the candidates alone (distinct categories, creation days), computed
    once per object: a candidate list cached by the product DB serves many requests."""

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])

    def created_days(self) -> F32:
        """Creation date as float32 days since 1970-01-01 (memoised)."""
        out = self._memo.get("created_days")
        if out is None:
            days = self.created_at.astype("datetime64[D]").astype(np.int64).astype(np.float32)
            out = self._memo.setdefault("created_days", days)
        return out  # type: ignore[no-any-return]

    def distinct_categories(self) -> tuple[I64, npt.NDArray[np.intp]]:
        """``np.unique(category_ids, return_inverse=True)`` (memoised)."""
        out = self._memo.get("distinct_categories")
        if out is None:
            out = self._memo.setdefault(
                "distinct_categories", np.unique(self.category_ids, return_inverse=True)
            )
        return out  # type: ignore[no-any-return]

    def context_free(self, tables: FeatureTables) -> _ContextFree:
        """The context-independent part of ``assemble`` for these candidates and ``tables``
        (memoised per tables object: keyed by the tables' identity token, which the entry holds,
        so a bundle swap never reuses another table's values; the last ``_CONTEXT_FREE_KEEP``
        tables are kept). Like the other memoised values it assumes the arrays are not mutated
        in place (the product DB's cached arrays are read-only)."""
        token = tables.token()
        memo: dict[_Token, _ContextFree] | None = self._memo.get("context_free")
        if memo is None:
            memo = self._memo.setdefault("context_free", {})
        out = memo.get(token)
        if out is None:
            out = memo.setdefault(token, _ContextFree.build(self, tables))
            while len(memo) > _CONTEXT_FREE_KEEP:
                try:
                    memo.pop(next(iter(memo)), None)
                except (RuntimeError, StopIteration):  # another thread changed it; fine
                    break
        return out

    @staticmethod
    def empty() -> Candidates:
        obj = np.empty(0, dtype=object)
        return Candidates(
            item_ids=np.empty(0, dtype=np.int64),
            codes=obj,
            names=obj.copy(),
            category_ids=np.empty(0, dtype=np.int64),
            categories=obj.copy(),
            account_codes=obj.copy(),
            created_at=np.empty(0, dtype="datetime64[s]"),
        )

    def take(self, idx: npt.ArrayLike) -> Candidates:
        """Rows ``idx`` (any integer index array), e.g. to align candidates with training rows."""
        i = np.asarray(idx, dtype=np.int64)
        return Candidates(
            item_ids=self.item_ids[i],
            codes=self.codes[i],
            names=self.names[i],
            category_ids=self.category_ids[i],
            categories=self.categories[i],
            account_codes=self.account_codes[i],
            created_at=self.created_at[i],
        )


@dataclass(frozen=True, slots=True)
class ContextBatch:
    """Many contexts, columnar (training and evaluation). Unknown ids are -1."""

    employee_ids: I64
    vendor_ids: I64
    descriptions: OBJ
    amounts: F64
    expense_days: I64
    departments: OBJ
    industries: OBJ

    def __len__(self) -> int:
        return int(self.employee_ids.shape[0])

    def take(self, idx: npt.ArrayLike) -> ContextBatch:
        """Rows ``idx`` (any integer index array), e.g. the contexts of one feature snapshot."""
        i = np.asarray(idx, dtype=np.int64)
        return ContextBatch(
            employee_ids=self.employee_ids[i],
            vendor_ids=self.vendor_ids[i],
            descriptions=self.descriptions[i],
            amounts=self.amounts[i],
            expense_days=self.expense_days[i],
            departments=self.departments[i],
            industries=self.industries[i],
        )

    @staticmethod
    def from_contexts(contexts: Sequence[RankContext]) -> ContextBatch:
        def objs(values: list[str]) -> OBJ:
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            return arr

        return ContextBatch(
            employee_ids=np.array(
                [-1 if c.employee_id is None else c.employee_id for c in contexts], dtype=np.int64
            ),
            vendor_ids=np.array(
                [-1 if c.vendor_id is None else c.vendor_id for c in contexts], dtype=np.int64
            ),
            descriptions=objs([c.description for c in contexts]),
            amounts=np.array([c.amount for c in contexts], dtype=np.float64),
            expense_days=np.array([to_day(c.expense_date) for c in contexts], dtype=np.int64),
            departments=objs([c.employee_department or "" for c in contexts]),
            industries=objs([c.vendor_industry or "" for c in contexts]),
        )


@dataclass(frozen=True, slots=True)
class ModelInput:
    """What the ONNX model takes: ``num`` float32 [N, F] and ``cat`` object/str [N, C]."""

    num: F32
    cat: OBJ
    rows: int
    item_default_rows: int
    """Rows whose item has no feature row (item new since the features' as-of date)."""
    emp_item_default_rows: int
    """Rows without an (employee, item) feature row (employee never used that item)."""
    unknown_employee_rows: int
    """Rows whose employee is unknown to the feature tables (new employee, or none given)."""
    unknown_vendor_rows: int
    unknown_terms: int
    """Description terms not in the feature vocabulary (summed over contexts)."""


# --------------------------------------------------------------------------------------------
# Feature tables


@dataclass(frozen=True, slots=True)
class Table:
    """One feature table: sorted int64 keys and float32 value columns (memory-mapped views).

    ``matrix`` is the same values as one float32 [columns, rows] array (row ``j`` is column
    ``j`` of ``TABLES[name]``), so that a lookup gathers every column in one call
    (:meth:`gather`). Built by :meth:`FeatureTables.from_arrays` (the columns are its rows) and
    by :meth:`FeatureTables.open` as a zero-copy strided view over the mapped file when its
    column buffers are evenly spaced (they are, as ``write`` lays them out); ``None`` otherwise,
    and :meth:`gather` then gathers column by column (same result)."""

    keys: I64
    columns: Mapping[str, F32]
    matrix: F32 | None = None

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def lookup(self, query: I64) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        """Row positions of ``query`` keys and whether each was found.

        When every query key has the same high 32 bits (one employee / vendor / term, the
        serving case), the search is narrowed to that key range first: same result, a fraction
        of the cost on large pair tables."""
        keys = self.keys
        n = keys.shape[0]
        if n == 0 or query.size == 0:
            return np.zeros(query.shape, dtype=np.intp), np.zeros(query.shape, dtype=bool)
        offset = 0
        lo_key = hi_key = np.int64(0)
        if n > 4096:
            lo_key, hi_key = query.min(), query.max()
        if n > 4096 and (lo_key >> 32) == (hi_key >> 32):
            offset = int(np.searchsorted(keys, lo_key))
            end = int(np.searchsorted(keys, hi_key, side="right"))
            keys = keys[offset:end]
            if keys.shape[0] == 0:
                return np.zeros(query.shape, dtype=np.intp), np.zeros(query.shape, dtype=bool)
        pos = np.searchsorted(keys, query)
        np.minimum(pos, keys.shape[0] - 1, out=pos)
        found = keys[pos] == query
        if offset:
            pos += offset
        return pos, found

    def lookup_pairs(
        self, high: int, low: I64
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        """``lookup(pair_key(high, low))`` for one ``high`` id (``low`` >= 0): the key range of
        ``high`` is found with two scalar searches, then only ``low`` is searched in it. A
        negative ``high`` (unknown) finds nothing."""
        keys = self.keys
        if high < 0 or keys.shape[0] == 0 or low.size == 0:
            return np.zeros(low.shape, dtype=np.intp), np.zeros(low.shape, dtype=bool)
        base = np.int64(high) << 32
        query: I64 = base | low
        if keys.shape[0] <= 4096:
            return self.lookup(query)
        offset = int(np.searchsorted(keys, base))
        end = int(np.searchsorted(keys, base | _LOW32, side="right"))
        if end == offset:
            return np.zeros(low.shape, dtype=np.intp), np.zeros(low.shape, dtype=bool)
        part = keys[offset:end]
        pos = np.searchsorted(part, query)
        np.minimum(pos, part.shape[0] - 1, out=pos)
        found = part[pos] == query
        pos += offset
        return pos, found

    def get(
        self, column: str, pos: npt.NDArray[np.intp], found: npt.NDArray[np.bool_], default: float
    ) -> F32:
        """Values of ``column`` at ``pos``, ``default`` where the key was not found."""
        return self.take(column, Hits.of(pos, found), default)

    def find(self, query: I64) -> Hits:
        """``lookup`` packaged for repeated ``take`` calls (the miss mask is computed once)."""
        pos, found = self.lookup(query)
        return Hits.of(pos, found)

    def take(self, column: str, hits: Hits, default: float) -> F32:
        col = self.columns[column]
        if col.shape[0] == 0:
            return np.full(hits.pos.shape, default, dtype=np.float32)
        out = col[hits.pos]
        if hits.misses:
            out[hits.missing] = default
        return out

    def gather(self, pos: npt.NDArray[np.intp], found: npt.NDArray[np.bool_], defaults: F32) -> F32:
        """Every column at ``pos`` (1-D) as float32 [columns, len(pos)], ``defaults[j]`` in
        column ``j`` where the key was not found: one gather for the whole table."""
        k = defaults.shape[0]
        if self.keys.shape[0] == 0:
            return np.repeat(defaults[:, None], pos.shape[0], axis=1)
        hit = np.flatnonzero(found)
        if hit.shape[0] != pos.shape[0]:
            # some keys missing: start from the defaults and gather only the hits (cheaper
            # than gathering every row and then masking a [columns, rows] block)
            pos = pos[hit]
            out: F32 = np.empty((k, found.shape[0]), dtype=np.float32)
            out[:] = defaults[:, None]
            if hit.shape[0]:
                out[:, hit] = self._take(pos)
            return out
        return self._take(pos)

    def _take(self, pos: npt.NDArray[np.intp]) -> F32:
        if self.matrix is not None:
            out: F32 = np.take(self.matrix, pos, axis=1)
            return out
        out = np.empty((len(self.columns), pos.shape[0]), dtype=np.float32)
        for j, col in enumerate(self.columns.values()):
            np.take(col, pos, out=out[j])
        return out


@dataclass(frozen=True, slots=True)
class Hits:
    """Result of a key lookup: row positions, found flags, and the mask of misses."""

    pos: npt.NDArray[np.intp]
    found: npt.NDArray[np.bool_]
    missing: npt.NDArray[np.bool_]
    misses: int

    @staticmethod
    def of(pos: npt.NDArray[np.intp], found: npt.NDArray[np.bool_]) -> Hits:
        missing = ~found
        return Hits(pos=pos, found=found, missing=missing, misses=int(np.count_nonzero(missing)))


@dataclass(frozen=True, slots=True)
class FeatureTables:
    """The feature artifact's tables. ``open`` memory-maps them (pages shared by processes)."""

    as_of: date
    schema_version: str
    tables: Mapping[str, Table]
    terms: OBJ  # sorted vocabulary (str), term id = position
    directory: Path | None = None
    _keepalive: tuple[Any, ...] = field(default=(), repr=False, compare=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def token(self) -> _Token:
        """This object's identity for memos held elsewhere (``Candidates.context_free``): unlike
        ``id(self)`` it is never reused by another tables object while a memo holds it, and
        holding it does not keep the (memory-mapped) tables alive."""
        token = self._memo.get("token")
        if token is None:
            token = self._memo.setdefault("token", _Token())
        return token  # type: ignore[no-any-return]

    def term_index(self) -> dict[str, int]:
        """{term: term id} for the vocabulary (memoised; the first position of a term, as a
        left ``searchsorted`` in the sorted vocabulary would find it)."""
        index = self._memo.get("term_index")
        if index is None:
            terms = self.terms.tolist()
            built = {str(t): i for i, t in reversed(list(enumerate(terms)))}
            index = self._memo.setdefault("term_index", built)
        return index  # type: ignore[no-any-return]

    @property
    def row_counts(self) -> dict[str, int]:
        counts = {name: len(t) for name, t in self.tables.items()}
        counts["terms"] = int(self.terms.shape[0])
        return counts

    @property
    def nbytes(self) -> int:
        """Bytes of the numeric table data (memory-mapped when opened from files)."""
        total = 0
        for t in self.tables.values():
            total += t.keys.nbytes + sum(c.nbytes for c in t.columns.values())
        return total

    @staticmethod
    def from_arrays(
        as_of: date,
        tables: Mapping[str, Mapping[str, npt.ArrayLike]],
        terms: Sequence[str] | OBJ,
    ) -> FeatureTables:
        """In-memory tables (training builds many snapshots without touching disk).

        ``tables[name]`` holds ``key`` plus every column of ``TABLES[name]``; keys need not be
        sorted (they are sorted here) but must be unique. ``terms`` must be sorted & unique."""
        built: dict[str, Table] = {}
        for name, cols in TABLES.items():
            if name not in tables:
                raise FeatureTablesError(f"feature table {name!r} is missing")
            src = tables[name]
            keys = np.asarray(src["key"], dtype=np.int64)
            order = np.argsort(keys, kind="stable")
            keys = np.ascontiguousarray(keys[order])
            if keys.shape[0] > 1 and bool(np.any(keys[1:] == keys[:-1])):
                raise FeatureTablesError(f"feature table {name!r} has duplicate keys")
            matrix = np.empty((len(cols), keys.shape[0]), dtype=np.float32)
            for j, c in enumerate(cols):
                matrix[j] = np.asarray(src[c], dtype=np.float32)[order]
            values = {c: matrix[j] for j, c in enumerate(cols)}
            built[name] = Table(keys=keys, columns=values, matrix=matrix)
        vocab = np.empty(len(terms), dtype=object)
        vocab[:] = list(terms)
        if vocab.shape[0] > 1 and not bool(np.all(vocab[1:] > vocab[:-1])):
            raise FeatureTablesError("terms vocabulary must be sorted and unique")
        return FeatureTables(
            as_of=as_of, schema_version=FEATURE_SCHEMA_VERSION, tables=built, terms=vocab
        )

    def write(self, directory: Path) -> list[Path]:
        """Write every table as an uncompressed Arrow IPC (Feather v2) file, plus ``terms.arrow``
        and ``tables.json`` (as-of, schema version, row counts, columns). Returns the files."""
        directory.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for name, table in self.tables.items():
            arrays = [pa.array(table.keys, type=pa.int64())]
            names = ["key"]
            for col in TABLES[name]:
                arrays.append(pa.array(table.columns[col], type=pa.float32()))
                names.append(col)
            path = directory / f"{name}.arrow"
            _write_ipc(path, pa.Table.from_arrays(arrays, names=names))
            written.append(path)
        terms_path = directory / TERMS_FILE
        _write_ipc(
            terms_path,
            pa.Table.from_arrays([pa.array(list(self.terms), type=pa.string())], names=["term"]),
        )
        written.append(terms_path)
        meta = {
            "schema_version": self.schema_version,
            "as_of": self.as_of.isoformat(),
            "row_counts": self.row_counts,
            "tables": {name: ["key", *cols] for name, cols in TABLES.items()},
        }
        meta_path = directory / META_FILE
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(meta_path)
        return written

    @staticmethod
    def open(directory: Path) -> FeatureTables:
        """Memory-map the tables in ``directory`` (as written by ``write``).

        Numeric columns are zero-copy numpy views on the mapped files, so several worker
        processes opening the same folder share the page cache instead of private copies."""
        meta_path = directory / META_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise FeatureTablesError(f"{directory}: no {META_FILE}; not a feature folder") from exc
        except (OSError, ValueError) as exc:
            raise FeatureTablesError(f"{meta_path}: unreadable ({exc})") from exc
        version = meta.get("schema_version")
        if version != FEATURE_SCHEMA_VERSION:
            raise FeatureTablesError(
                f"{directory}: feature schema {version}, this code reads {FEATURE_SCHEMA_VERSION}"
            )
        keepalive: list[Any] = []
        tables: dict[str, Table] = {}
        for name, cols in TABLES.items():
            path = directory / f"{name}.arrow"
            table = _read_ipc_mmap(path, keepalive)
            missing = [c for c in ("key", *cols) if c not in table.column_names]
            if missing:
                raise FeatureTablesError(f"{path}: missing columns {missing}")
            keys = _zero_copy(table, "key", np.int64, path)
            values = {c: _zero_copy(table, c, np.float32, path) for c in cols}
            tables[name] = Table(keys=keys, columns=values, matrix=_strided_matrix(values))
        terms_tab = _read_ipc_mmap(directory / TERMS_FILE, keepalive)
        terms = np.empty(terms_tab.num_rows, dtype=object)
        terms[:] = terms_tab.column("term").to_pylist()
        return FeatureTables(
            as_of=date.fromisoformat(meta["as_of"]),
            schema_version=version,
            tables=tables,
            terms=terms,
            directory=directory,
            _keepalive=tuple(keepalive),
        )


def _write_ipc(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _read_ipc_mmap(path: Path, keepalive: list[Any]) -> pa.Table:
    try:
        source = pa.memory_map(str(path), "r")
        table = ipc.open_file(source).read_all()
    except (OSError, pa.ArrowInvalid) as exc:
        raise FeatureTablesError(f"{path}: cannot open as Arrow IPC ({exc})") from exc
    keepalive.append(source)
    return table


def _strided_matrix(columns: Mapping[str, F32]) -> F32 | None:
    """The columns as one read-only [columns, rows] view when they lie in memory at evenly
    spaced addresses (``write`` puts equal-length float32 buffers one after the other), so one
    ``np.take`` gathers a row of every column; ``None`` when they do not."""
    cols = list(columns.values())
    if not cols or cols[0].shape[0] == 0:
        return None
    first = cols[0]
    if len(cols) == 1:
        return first[None, :]
    if any(c.shape != first.shape or c.strides != first.strides for c in cols):
        return None
    addresses = [int(c.__array_interface__["data"][0]) for c in cols]
    step = addresses[1] - addresses[0]
    if step < first.nbytes or any(b - a != step for a, b in itertools.pairwise(addresses)):
        return None
    view: F32 = np.lib.stride_tricks.as_strided(
        first, shape=(len(cols), first.shape[0]), strides=(step, first.strides[0]), writeable=False
    )
    return view


def _zero_copy(table: pa.Table, column: str, dtype: type, path: Path) -> Any:
    col = table.column(column)
    if col.num_chunks > 1:
        raise FeatureTablesError(f"{path}: column {column} is chunked; rewrite the table")
    if col.num_chunks == 0:
        return np.empty(0, dtype=dtype)
    arr = col.chunk(0).to_numpy(zero_copy_only=True)
    if arr.dtype != dtype:
        raise FeatureTablesError(f"{path}: column {column} is {arr.dtype}, expected {dtype}")
    return arr


class _Token:
    """An identity: compared and hashed by ``id`` (no other state)."""

    __slots__ = ()


_CONTEXT_FREE_KEEP: Final = 2
"""Context-free assembly parts kept per ``Candidates``: one per ``FeatureTables`` object, for
the active bundle and the one before it (a rollout serves both for a while). ~70 bytes per
candidate each."""


@dataclass(frozen=True, slots=True)
class _ContextFree:
    """What ``assemble`` computes from the candidates and feature tables alone, whatever the
    request: item-table and category-table values, the candidates' categorical columns. The
    request's date, employee, vendor, description and amount are applied per request."""

    item_counts: F32
    """[N, 5]: ``item_cnt_30d .. item_n_users_90d``."""
    cat: OBJ
    """[N, C] with ``category`` and ``account_code`` filled (the rest of each request's copy
    is overwritten)."""
    item_last: F32
    item_amt_mean: F32
    item_amt_den: F32
    """``max(amt_std, floor)``, the divisor of ``item_amount_z``."""
    item_found: npt.NDArray[np.bool_]
    item_default: int
    block: F32
    """[U, 8] category block (distinct categories) with ``cat_share_90d`` filled."""
    cat_amt_mean: F32
    cat_amt_den: F32
    cat_found: npt.NDArray[np.bool_]

    @staticmethod
    def build(candidates: Candidates, tables: FeatureTables) -> _ContextFree:
        n = len(candidates)
        t = tables.tables
        pos, found = t["item"].lookup(candidates.item_ids)
        m = t["item"].gather(pos, found, _ITEM_DEFAULTS)
        cat = np.empty((n, len(CATEGORICAL_FEATURES)), dtype=object)
        cat[:, 0] = candidates.categories
        cat[:, 1] = candidates.account_codes
        u_cat, _ = candidates.distinct_categories()
        block = np.zeros((u_cat.shape[0], 8), dtype=np.float32)
        cpos, cfound = t["category"].lookup(u_cat)
        cm = t["category"].gather(cpos, cfound, _CATEGORY_DEFAULTS)
        block[:, 2] = cm[0]
        out = _ContextFree(
            item_counts=np.ascontiguousarray(m[:5].T),  # cnt_30d .. n_users_90d
            cat=cat,
            item_last=m[5].copy(),
            item_amt_mean=m[6].copy(),
            item_amt_den=np.maximum(m[7], np.float32(_AMT_STD_FLOOR)),
            item_found=found,
            item_default=n - int(np.count_nonzero(found)),
            block=block,
            cat_amt_mean=cm[1].copy(),
            cat_amt_den=np.maximum(cm[2], np.float32(_AMT_STD_FLOOR)),
            cat_found=cfound,
        )
        for value in (getattr(out, name) for name in out.__slots__):
            if isinstance(value, np.ndarray):
                value.flags.writeable = False  # shared by every request
        return out


# --------------------------------------------------------------------------------------------
# Assembly


def assemble(ctx: RankContext, candidates: Candidates, tables: FeatureTables) -> ModelInput:
    """Model input for one expense and its candidates (serving). Same code as training."""
    n = len(candidates)
    return assemble_batch(
        ContextBatch.from_contexts([ctx]), np.zeros(n, dtype=np.int64), candidates, tables
    )


def assemble_batch(
    contexts: ContextBatch,
    ctx_index: I64,
    candidates: Candidates,
    tables: FeatureTables,
    *,
    n_candidates: npt.ArrayLike | None = None,
) -> ModelInput:
    """Model input for rows (context ``ctx_index[i]``, candidate row ``i``).

    ``n_candidates`` (per row) is the size of the candidate list the row was drawn from; by
    default it is the number of rows per context (right for serving, where every candidate of
    the tenant is scored; training passes the catalogue size at the expense's time).

    Per-context values are computed once per context and broadcast; each table is read with
    one gather of all its columns (:meth:`Table.gather`). With a single context (serving) its
    values are scalars, pair tables are searched within that employee's / vendor's key range,
    and everything that does not depend on the context (item- and category-table values, the
    candidates' distinct categories and categorical columns) is memoised on the ``Candidates``
    object per ``FeatureTables`` object (:meth:`Candidates.context_free`); the request's date,
    employee, vendor, description and amount are applied per call."""
    n = len(candidates)
    ci = np.asarray(ctx_index, dtype=np.int64)
    if ci.shape[0] != n:
        raise FeatureSpecError("ctx_index must have one entry per candidate row")
    single = len(contexts) == 1
    # one context (serving): the context-free part is memoised per (candidates, tables)
    pre = candidates.context_free(tables) if single else None
    num = np.empty((n, len(NUMERIC_FEATURES)), dtype=np.float32)
    t = tables.tables
    items = candidates.item_ids

    # per-context values, as arrays over contexts (the same ufunc loops for one or many)
    ctx_log_amount = np.log1p(np.maximum(contexts.amounts, 0.0)).astype(np.float32)
    ctx_day = contexts.expense_days.astype(np.float32)
    if n_candidates is None:
        per_ctx = np.bincount(ci, minlength=len(contexts)).astype(np.float32)
        ctx_log_ncand = np.log1p(per_ctx)
        log_ncand: Any = ctx_log_ncand[0] if single else ctx_log_ncand[ci]
    else:
        log_ncand = np.log1p(np.asarray(n_candidates, dtype=np.float32))
    # One context: scalars broadcast over the rows; many: one value per row.
    day: Any = ctx_day[0] if single else ctx_day[ci]
    log_amount: Any = ctx_log_amount[0] if single else ctx_log_amount[ci]
    num[:, _C_LOG_AMOUNT] = log_amount
    num[:, _C_LOG_NCAND] = log_ncand
    age = num[:, _C_ITEM_AGE]
    np.subtract(day, candidates.created_days(), out=age)
    np.clip(age, 0.0, DAYS_NEVER, out=age)

    def days_since(last: F32, out: F32) -> None:
        # a missing row reads as "last used infinitely long ago", clipped to DAYS_NEVER
        np.subtract(day, last, out=out)
        np.clip(out, 0.0, DAYS_NEVER, out=out)

    def pair_lookup(table: Table, ids: I64, low: I64, index: Any) -> Any:
        if single:
            return table.lookup_pairs(int(ids[0]), low)
        return table.lookup(_pk(ids[index], low))

    # item
    if pre is None:
        pos, found = t["item"].lookup(items)
        m = t["item"].gather(pos, found, _ITEM_DEFAULTS)
        num[:, _C_ITEM : _C_ITEM + 5] = m[:5].T  # cnt_30d .. n_users_90d
        item_last, item_amt_mean = m[5], m[6]
        item_amt_den = np.maximum(m[7], np.float32(_AMT_STD_FLOOR))
        item_default = n - int(np.count_nonzero(found))
    else:
        num[:, _C_ITEM : _C_ITEM + 5] = pre.item_counts
        item_last, item_amt_mean, item_amt_den = pre.item_last, pre.item_amt_mean, pre.item_amt_den
        found, item_default = pre.item_found, pre.item_default
    days_since(item_last, num[:, _C_ITEM + 5])
    z = (log_amount - item_amt_mean) / item_amt_den
    num[:, _C_ITEM + 6] = np.where(found, np.clip(z, -10.0, 10.0), np.float32(0.0))

    # employee x item
    pos, found = pair_lookup(t["emp_item"], contexts.employee_ids, items, ci)
    m = t["emp_item"].gather(pos, found, _EMP_ITEM_DEFAULTS)
    num[:, _C_EMP_ITEM : _C_EMP_ITEM + 2] = m[:2].T
    days_since(m[2], num[:, _C_EMP_ITEM + 2])
    num[:, _C_EMP_ITEM + 3] = m[3]
    emp_item_default = n - int(np.count_nonzero(found))

    # vendor x item
    pos, found = pair_lookup(t["vendor_item"], contexts.vendor_ids, items, ci)
    m = t["vendor_item"].gather(pos, found, _VENDOR_ITEM_DEFAULTS)
    num[:, _C_VENDOR_ITEM : _C_VENDOR_ITEM + 2] = m[:2].T
    days_since(m[2], num[:, _C_VENDOR_ITEM + 2])

    # context volume: looked up per context, then broadcast to rows
    pos, emp_found = t["employee"].lookup(contexts.employee_ids)
    emp_cnt = t["employee"].gather(pos, emp_found, _ZERO1)[0]
    pos, ven_found = t["vendor"].lookup(contexts.vendor_ids)
    ven_cnt = t["vendor"].gather(pos, ven_found, _ZERO1)[0]
    num[:, _C_CTX] = emp_cnt[0] if single else emp_cnt[ci]
    num[:, _C_CTX + 1] = ven_cnt[0] if single else ven_cnt[ci]

    # category level: computed once per distinct (context, category), then broadcast to rows
    if single:
        u_cat, inv = candidates.distinct_categories()
        u_ctx: Any = 0
    else:
        upair, inv = np.unique(_pk(ci, candidates.category_ids), return_inverse=True)
        u_ctx = upair >> 32
        u_cat = upair & _LOW32
    u = u_cat.shape[0]
    # the features emp_cat_share .. dept_cat_share
    block = np.empty((u, 8), dtype=np.float32) if pre is None else pre.block.copy()
    pos, found = pair_lookup(t["emp_cat"], contexts.employee_ids, u_cat, u_ctx)
    block[:, 0] = t["emp_cat"].gather(pos, found, _ZERO1)[0]
    pos, found = pair_lookup(t["vendor_cat"], contexts.vendor_ids, u_cat, u_ctx)
    block[:, 1] = t["vendor_cat"].gather(pos, found, _ZERO1)[0]
    if pre is None:
        pos, found = t["category"].lookup(u_cat)
        m = t["category"].gather(pos, found, _CATEGORY_DEFAULTS)
        block[:, 2] = m[0]
        cat_amt_mean, cat_found = m[1], found
        cat_amt_den = np.maximum(m[2], np.float32(_AMT_STD_FLOOR))
    else:  # cat_share_90d is in the copied block
        cat_amt_mean, cat_amt_den, cat_found = pre.cat_amt_mean, pre.cat_amt_den, pre.cat_found
    u_log_amount = ctx_log_amount[u_ctx]
    cat_z = (u_log_amount - cat_amt_mean) / cat_amt_den
    block[:, 3] = np.where(cat_found, np.clip(cat_z, -10.0, 10.0), 0.0)

    # description terms, industry and department x category
    term_ids, unknown_terms = _context_terms(contexts, tables)
    tc = t["term_cat"]
    n_desc = term_ids.shape[1] - 2
    tids = term_ids[0][None, :] if single else term_ids[u_ctx]  # [1 or U, n_desc + 2]
    keys = _pk(tids, u_cat[:, None])
    pos, found = tc.lookup(keys)
    share = tc.get("share", pos, found, 0.0)
    desc_share = np.where(found[:, :n_desc], share[:, :n_desc], 0.0)
    n_known = (tids[:, :n_desc] >= 0).sum(axis=1)
    desc_mean = np.where(n_known > 0, desc_share.sum(axis=1) / np.maximum(n_known, 1), 0.0)
    desc_max = desc_share.max(axis=1) if n_desc else np.zeros(u)
    block[:, 4] = desc_mean
    block[:, 5] = desc_max
    block[:, 6] = share[:, n_desc]
    block[:, 7] = share[:, n_desc + 1]
    num[:, _C_CAT : _C_CAT + 8] = block.take(inv, axis=0)

    if pre is None:
        cat = np.empty((n, len(CATEGORICAL_FEATURES)), dtype=object)
        cat[:, 0] = candidates.categories
        cat[:, 1] = candidates.account_codes
    else:
        cat = pre.cat.copy()
    if single:
        cat[:, 2] = contexts.industries[0]
        cat[:, 3] = contexts.departments[0]
        unknown_employee_rows = 0 if emp_found[0] else n
        unknown_vendor_rows = 0 if ven_found[0] else n
    else:
        cat[:, 2] = contexts.industries[ci]
        cat[:, 3] = contexts.departments[ci]
        unknown_employee_rows = int(np.count_nonzero(~emp_found[ci]))
        unknown_vendor_rows = int(np.count_nonzero(~ven_found[ci]))

    return ModelInput(
        num=num,
        cat=cat,
        rows=n,
        item_default_rows=item_default,
        emp_item_default_rows=emp_item_default,
        unknown_employee_rows=unknown_employee_rows,
        unknown_vendor_rows=unknown_vendor_rows,
        unknown_terms=unknown_terms,
    )


def _column(name: str, *following: str) -> int:
    """Index of ``name`` in ``NUMERIC_FEATURES``, checking that ``following`` come right after
    it (``assemble_batch`` writes such runs of columns with one slice assignment)."""
    start = NUMERIC_FEATURES.index(name)
    run = NUMERIC_FEATURES[start + 1 : start + 1 + len(following)]
    if run != following:
        raise AssertionError(f"NUMERIC_FEATURES: {following} must follow {name}")
    return start


_C_LOG_AMOUNT: Final = _column("log_amount")
_C_LOG_NCAND: Final = _column("log_n_candidates")
_C_ITEM_AGE: Final = _column("item_age_days")
_C_ITEM: Final = _column(
    "item_cnt_30d",
    "item_cnt_90d",
    "item_cnt_365d",
    "item_share_90d",
    "item_n_users_90d",
    "item_days_since_use",
    "item_amount_z",
)
_C_EMP_ITEM: Final = _column(
    "emp_item_cnt_365d",
    "emp_item_share_365d",
    "emp_item_days_since_use",
    "emp_item_recency_rank",
)
_C_VENDOR_ITEM: Final = _column(
    "vendor_item_cnt_365d", "vendor_item_share_365d", "vendor_item_days_since_use"
)
_C_CTX: Final = _column("emp_cnt_365d", "vendor_cnt_365d")
_C_CAT: Final = _column(
    "emp_cat_share_365d",
    "vendor_cat_share_365d",
    "cat_share_90d",
    "cat_amount_z",
    "desc_cat_mean",
    "desc_cat_max",
    "industry_cat_share",
    "dept_cat_share",
)


def _defaults(table: str, **values: float) -> F32:
    """Value per column of ``table`` for a key that is not in it (0 unless given)."""
    return np.array([values.get(c, 0.0) for c in TABLES[table]], dtype=np.float32)


_ITEM_DEFAULTS: Final = _defaults("item", last_day=_NEVER_DAY, amt_std=1.0)
_EMP_ITEM_DEFAULTS: Final = _defaults("emp_item", last_day=_NEVER_DAY, recency_rank=RANK_NEVER)
_VENDOR_ITEM_DEFAULTS: Final = _defaults("vendor_item", last_day=_NEVER_DAY)
_CATEGORY_DEFAULTS: Final = _defaults("category", amt_std=1.0)
_ZERO1: Final = np.zeros(1, dtype=np.float32)


def _context_terms(contexts: ContextBatch, tables: FeatureTables) -> tuple[I64, int]:
    """Term ids per context, [n_ctx, MAX_TERMS + 2]: description terms (-1 padded), then the
    industry term, then the department term (-1 when unknown; also -1 for terms not in the
    vocabulary). Loops over contexts only; returns the count of unknown description terms."""
    index = tables.term_index()
    width = MAX_TERMS + 2
    rows: list[list[int]] = []
    unknown = 0
    for i in range(len(contexts)):
        row = [index.get(term, -1) for term in tokenize(str(contexts.descriptions[i]))]
        unknown += row.count(-1)
        row.extend([-1] * (MAX_TERMS - len(row)))
        row.append(index.get(industry_term(str(contexts.industries[i])), -1))
        row.append(index.get(department_term(str(contexts.departments[i])), -1))
        rows.append(row)
    if not rows:
        return np.full((0, width), -1, dtype=np.int64), 0
    return np.array(rows, dtype=np.int64), unknown
