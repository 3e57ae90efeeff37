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

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])

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
    """One feature table: sorted int64 keys and float32 value columns (memory-mapped views)."""

    keys: I64
    columns: Mapping[str, F32]

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
            values = {
                c: np.ascontiguousarray(np.asarray(src[c], dtype=np.float32)[order]) for c in cols
            }
            built[name] = Table(keys=keys, columns=values)
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
            tables[name] = Table(keys=keys, columns=values)
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
    the tenant is scored; training passes the catalogue size at the expense's time)."""
    n = len(candidates)
    ci = np.asarray(ctx_index, dtype=np.int64)
    if ci.shape[0] != n:
        raise FeatureSpecError("ctx_index must have one entry per candidate row")
    f = len(NUMERIC_FEATURES)
    num = np.empty((n, f), dtype=np.float32)
    col = {name: j for j, name in enumerate(NUMERIC_FEATURES)}
    t = tables.tables

    emp = contexts.employee_ids[ci]
    ven = contexts.vendor_ids[ci]
    day = contexts.expense_days[ci].astype(np.float32)
    amount = contexts.amounts[ci]
    log_amount = np.log1p(np.maximum(amount, 0.0)).astype(np.float32)
    items = candidates.item_ids
    cats = candidates.category_ids

    if n_candidates is None:
        per_ctx = np.bincount(ci, minlength=len(contexts))
        ncand = per_ctx[ci].astype(np.float32)
    else:
        ncand = np.asarray(n_candidates, dtype=np.float32)
    num[:, col["log_amount"]] = log_amount
    num[:, col["log_n_candidates"]] = np.log1p(ncand)
    created_day = candidates.created_at.astype("datetime64[D]").astype(np.int64)
    num[:, col["item_age_days"]] = np.clip(day - created_day.astype(np.float32), 0.0, DAYS_NEVER)

    def days_since(table: Table, hits: Hits) -> F32:
        # a missing row reads as "last used infinitely long ago", clipped to DAYS_NEVER
        last = table.take("last_day", hits, _NEVER_DAY)
        out: F32 = np.clip(day - last, 0.0, DAYS_NEVER)
        return out

    def zscore(mean: F32, std: F32, found: npt.NDArray[np.bool_]) -> F32:
        z = (log_amount - mean) / np.maximum(std, np.float32(_AMT_STD_FLOOR))
        return np.where(found, np.clip(z, -10.0, 10.0), np.float32(0.0)).astype(np.float32)

    # item
    it = t["item"]
    h = it.find(items)
    for c in ("cnt_30d", "cnt_90d", "cnt_365d", "share_90d", "n_users_90d"):
        num[:, col[f"item_{c}"]] = it.take(c, h, 0.0)
    num[:, col["item_days_since_use"]] = days_since(it, h)
    num[:, col["item_amount_z"]] = zscore(
        it.take("amt_mean", h, 0.0), it.take("amt_std", h, 1.0), h.found
    )
    item_default = h.misses

    # employee x item
    ei = t["emp_item"]
    h = ei.find(_pk(emp, items))
    num[:, col["emp_item_cnt_365d"]] = ei.take("cnt_365d", h, 0.0)
    num[:, col["emp_item_share_365d"]] = ei.take("share_365d", h, 0.0)
    num[:, col["emp_item_days_since_use"]] = days_since(ei, h)
    num[:, col["emp_item_recency_rank"]] = ei.take("recency_rank", h, RANK_NEVER)
    emp_item_default = h.misses

    # vendor x item
    vi = t["vendor_item"]
    h = vi.find(_pk(ven, items))
    num[:, col["vendor_item_cnt_365d"]] = vi.take("cnt_365d", h, 0.0)
    num[:, col["vendor_item_share_365d"]] = vi.take("share_365d", h, 0.0)
    num[:, col["vendor_item_days_since_use"]] = days_since(vi, h)

    # context volume: looked up per context, then broadcast to rows
    et, vt = t["employee"], t["vendor"]
    h = et.find(contexts.employee_ids)
    emp_found = h.found
    num[:, col["emp_cnt_365d"]] = et.take("cnt_365d", h, 0.0)[ci]
    h = vt.find(contexts.vendor_ids)
    ven_found = h.found
    num[:, col["vendor_cnt_365d"]] = vt.take("cnt_365d", h, 0.0)[ci]

    # category level: computed once per distinct (context, category), then broadcast to rows
    pair = _pk(ci, cats)
    upair, inv = np.unique(pair, return_inverse=True)
    u_ctx = upair >> 32
    u_cat = upair & _LOW32
    ec, vc, ct = t["emp_cat"], t["vendor_cat"], t["category"]
    pos, found = ec.lookup(_pk(contexts.employee_ids[u_ctx], u_cat))
    num[:, col["emp_cat_share_365d"]] = ec.get("share_365d", pos, found, 0.0)[inv]
    pos, found = vc.lookup(_pk(contexts.vendor_ids[u_ctx], u_cat))
    num[:, col["vendor_cat_share_365d"]] = vc.get("share_365d", pos, found, 0.0)[inv]
    pos, found = ct.lookup(u_cat)
    num[:, col["cat_share_90d"]] = ct.get("share_90d", pos, found, 0.0)[inv]
    u_log_amount = np.log1p(np.maximum(contexts.amounts[u_ctx], 0.0)).astype(np.float32)
    cat_z = (u_log_amount - ct.get("amt_mean", pos, found, 0.0)) / np.maximum(
        ct.get("amt_std", pos, found, 1.0), np.float32(_AMT_STD_FLOOR)
    )
    num[:, col["cat_amount_z"]] = np.where(found, np.clip(cat_z, -10.0, 10.0), 0.0).astype(
        np.float32
    )[inv]

    # description terms, industry and department x category
    term_ids, unknown_terms = _context_terms(contexts, tables.terms)
    tc = t["term_cat"]
    n_desc = term_ids.shape[1] - 2
    tids = term_ids[u_ctx]  # [U, n_desc + 2]
    keys = _pk(tids, u_cat[:, None])
    pos, found = tc.lookup(keys)
    share = tc.get("share", pos, found, 0.0)
    desc_share = np.where(found[:, :n_desc], share[:, :n_desc], 0.0)
    n_known = (tids[:, :n_desc] >= 0).sum(axis=1)
    desc_mean = np.where(n_known > 0, desc_share.sum(axis=1) / np.maximum(n_known, 1), 0.0)
    desc_max = desc_share.max(axis=1) if n_desc else np.zeros(len(upair))
    num[:, col["desc_cat_mean"]] = desc_mean.astype(np.float32)[inv]
    num[:, col["desc_cat_max"]] = desc_max.astype(np.float32)[inv]
    num[:, col["industry_cat_share"]] = share[:, n_desc][inv]
    num[:, col["dept_cat_share"]] = share[:, n_desc + 1][inv]

    cat = np.empty((n, len(CATEGORICAL_FEATURES)), dtype=object)
    cat[:, 0] = candidates.categories
    cat[:, 1] = candidates.account_codes
    cat[:, 2] = contexts.industries[ci]
    cat[:, 3] = contexts.departments[ci]

    return ModelInput(
        num=num,
        cat=cat,
        rows=n,
        item_default_rows=item_default,
        emp_item_default_rows=emp_item_default,
        unknown_employee_rows=int(np.count_nonzero(~emp_found[ci])),
        unknown_vendor_rows=int(np.count_nonzero(~ven_found[ci])),
        unknown_terms=unknown_terms,
    )


def _context_terms(contexts: ContextBatch, vocab: OBJ) -> tuple[I64, int]:
    """Term ids per context, [n_ctx, MAX_TERMS + 2]: description terms (-1 padded), then the
    industry term, then the department term (-1 when unknown). Loops over contexts only."""
    n_ctx = len(contexts)
    width = MAX_TERMS + 2
    words: list[str] = []
    rows: list[int] = []
    cols: list[int] = []
    for i in range(n_ctx):
        terms = tokenize(str(contexts.descriptions[i]))
        words.extend(terms)
        rows.extend([i] * len(terms))
        cols.extend(range(len(terms)))
        words.append(industry_term(str(contexts.industries[i])))
        words.append(department_term(str(contexts.departments[i])))
        rows.extend((i, i))
        cols.extend((MAX_TERMS, MAX_TERMS + 1))
    out = np.full((n_ctx, width), -1, dtype=np.int64)
    if not words or vocab.shape[0] == 0:
        return out, sum(1 for c in cols if c < MAX_TERMS)
    query = np.empty(len(words), dtype=object)
    query[:] = words
    pos = np.searchsorted(vocab, query)
    np.minimum(pos, vocab.shape[0] - 1, out=pos)
    found = vocab[pos] == query
    ids = np.where(found, pos, -1).astype(np.int64)
    r = np.asarray(rows, dtype=np.int64)
    c = np.asarray(cols, dtype=np.int64)
    out[r, c] = ids
    unknown = int(np.count_nonzero(~found & (c < MAX_TERMS)))
    return out, unknown
