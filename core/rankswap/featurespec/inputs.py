"""The inputs of feature assembly and its output: one expense (``RankContext``), many
(``ContextBatch``, columnar), a tenant's candidate items (``Candidates``) and what the ONNX
model takes (``ModelInput``)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from .schema import F32, F64, I64, OBJ
from .terms import to_day

_T = TypeVar("_T")
_MISSING: Final = object()

DERIVED_KEEP: Final = 8
"""Values kept per ``Candidates`` by :meth:`Candidates.derived` (the oldest dropped first):
room for the answers' labels and, per bundle, two values (the input statistics and the answer
frame) of the two bundles a rollout serves at once, and a few more."""


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
    vendor_name: str = ""


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
    """Arrays derived from the candidates alone (distinct categories, creation days) and the
    context-free assembly parts (``serving.ServingBase``), computed once per object: a
    candidate list cached by the product DB serves many requests."""

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

    def id_order(self) -> tuple[I64, I64]:
        """(``argsort`` of the item ids, the ids in that order), memoised."""
        out = self._memo.get("id_sort")
        if out is None:
            order = np.argsort(self.item_ids, kind="stable").astype(np.int64)
            out = self._memo.setdefault("id_sort", (order, self.item_ids[order]))
        return out  # type: ignore[no-any-return]

    def lru(self, name: str, size: int) -> LruMemo:
        """The bounded memo ``name`` on these candidates (made, ``size`` entries, on first use):
        per-key parts of the serving assembly (an employee's rows, a term's, ...)."""
        memo: LruMemo | None = self._memo.get(name)
        if memo is None:
            memo = self._memo.setdefault(name, LruMemo(size))
        return memo

    def derived(self, key: Hashable, build: Callable[[], _T]) -> _T:
        """``build()``, memoised on these candidates under ``key``, which must identify
        everything else the value depends on (e.g. a feature tables' ``token()`` and a bundle
        id); the last ``DERIVED_KEEP`` keys are kept."""
        memo: dict[Hashable, Any] | None = self._memo.get("derived")
        if memo is None:
            memo = self._memo.setdefault("derived", {})
        hit = memo.get(key, _MISSING)  # one read: another thread may evict meanwhile
        if hit is not _MISSING:
            return hit  # type: ignore[no-any-return]
        out = memo.setdefault(key, build())
        while len(memo) > DERIVED_KEEP:
            try:
                memo.pop(next(iter(memo)), None)
            except (RuntimeError, StopIteration):  # another thread changed it; fine
                break
        return out  # type: ignore[no-any-return]

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
    vendor_names: OBJ

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
            vendor_names=self.vendor_names[i],
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
            vendor_names=objs([c.vendor_name or "" for c in contexts]),
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


class LruMemo:
    """A bounded memo, least recently used dropped first; safe to share between threads."""

    __slots__ = ("_items", "_lock", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> tuple[Any, bool]:
        """(value, True) for a key it holds, (None, False) otherwise."""
        items = self._items
        # no lock: each OrderedDict call is atomic under the GIL; a key another thread drops
        # between the two calls was still a hit
        try:
            value = items[key]
        except KeyError:
            return None, False
        try:  # noqa: SIM105 (contextlib.suppress costs more than this lookup)
            items.move_to_end(key)
        except KeyError:
            pass
        return value, True

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
