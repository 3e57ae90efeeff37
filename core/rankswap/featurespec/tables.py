"""The feature artifact's tables: sorted int64 keys and float32 columns, written as Arrow IPC
(Feather v2) files and memory-mapped by serving (``FeatureTables.open``), so worker processes
share the page cache instead of private copies."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.ipc as ipc

from .schema import (
    F32,
    FEATURE_SCHEMA_VERSION,
    I64,
    LOW32,
    META_FILE,
    OBJ,
    TABLES,
    TERMS_FILE,
    FeatureTablesError,
)


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

    def key_range(self, high: int) -> tuple[int, int]:
        """The rows ``[lo, hi)`` whose keys have the high 32 bits ``high`` (one employee's,
        vendor's or term's rows of a pair table), with one search; empty for a negative
        ``high`` (unknown)."""
        keys = self.keys
        if high < 0 or keys.shape[0] == 0:
            return 0, 0
        base = np.int64(high) << 32
        # searchsorted(base - 1, right) == searchsorted(base, left) for integer keys
        lo, hi = np.searchsorted(keys, np.array([base - 1, base | LOW32]), side="right").tolist()
        return int(lo), int(hi)

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
                out[:, hit] = self.rows(pos)
            return out
        return self.rows(pos)

    def rows(self, pos: npt.NDArray[np.intp]) -> F32:
        """Every column at the row positions ``pos`` (all found), float32 [columns, len(pos)]."""
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

    def token(self) -> Token:
        """This object's identity for memos held elsewhere (``serving.ServingBase``): unlike
        ``id(self)`` it is never reused by another tables object while a memo holds it, and
        holding it does not keep the (memory-mapped) tables alive."""
        token = self._memo.get("token")
        if token is None:
            token = self._memo.setdefault("token", Token())
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


class Token:
    """An identity: compared and hashed by ``id`` (no other state)."""

    __slots__ = ()
