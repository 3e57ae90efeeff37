"""The tree ensemble's own input: categorical codes exactly as the graph's encoders give them."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from tests.unit.ranker.builders import C, F, tree_model

from rankswap_ranker import bundle as bundles
from rankswap_ranker import treescore

pytestmark = pytest.mark.timeout(30)


def _scorer() -> treescore.TreeScorer:
    trees = treescore.split(tree_model(), F, bundles.session_options(1))
    assert trees is not None
    return trees


def _strings(values: list[str]) -> npt.NDArray[np.object_]:
    """A column of fresh string objects (no interning: equal values, other objects)."""
    arr = np.empty(len(values), dtype=object)
    arr[:] = ["".join(list(v)) for v in values]
    return arr


def _reference(
    trees: treescore.TreeScorer, cat: npt.NDArray[np.object_]
) -> npt.NDArray[np.float32]:
    """One dict lookup per row and column: the encoders' plain definition."""
    out = np.empty((len(trees.encoders), cat.shape[0]), dtype=np.float32)
    for j, enc in enumerate(trees.encoders):
        out[j] = [enc.codes.get(v, enc.default) for v in cat[:, enc.column]]
    return out


def _encoded(trees: treescore.TreeScorer, cat: npt.NDArray[np.object_]) -> npt.NDArray[np.float32]:
    out = np.full((len(trees.encoders), cat.shape[0]), np.nan, dtype=np.float32)
    trees.encode(cat, out)
    return out


def test_codes_are_the_encoders_for_constant_repeated_and_changed_columns() -> None:
    """A request's constant columns, a cached candidate list's columns seen again (memo hits),
    and columns that differ from a memoised one in a single row, or hold equal strings in other
    objects: every code is the encoder's own, unknown strings take the default."""
    trees = _scorer()
    n = 40
    values = (["travel", "meals", "supplies", "nope", ""] * 8)[:n]
    cat = np.empty((n, C), dtype=object)
    cat[:, 0] = _strings(values)
    cat[:, 1] = _strings((["x", "y", "z"] * 14)[:n])
    for j in range(2, C):
        cat[:, j] = "x"  # one object in every row, as one context's value is
    first = _encoded(trees, cat)
    np.testing.assert_array_equal(first, _reference(trees, cat))
    assert trees.memo.hits == 0
    again = cat.copy()  # the next request: the same string objects in a new array
    again[:, 2:] = "y"
    np.testing.assert_array_equal(_encoded(trees, again), _reference(trees, again))
    assert trees.memo.hits == 2  # category and account_code came from the memo
    changed = again.copy()
    changed[n // 2, 0] = "meals" if again[n // 2, 0] != "meals" else "travel"
    np.testing.assert_array_equal(_encoded(trees, changed), _reference(trees, changed))
    other_objects = again.copy()
    other_objects[:, 0] = _strings(values)
    np.testing.assert_array_equal(_encoded(trees, other_objects), _reference(trees, other_objects))
    nearly_constant = again.copy()  # one object everywhere but in one middle row
    nearly_constant[n // 2, 2] = "x"
    np.testing.assert_array_equal(
        _encoded(trees, nearly_constant), _reference(trees, nearly_constant)
    )
    assert _encoded(trees, cat[:0]).shape == (len(trees.encoders), 0)
    assert _encoded(trees, cat[:1]).tolist() == _reference(trees, cat[:1]).tolist()


def test_the_memo_is_bounded_and_keeps_its_strings() -> None:
    """Entries hold references to the strings they encoded (so no new string can take one of
    their addresses while the entry lives); the oldest go first past the bound."""
    trees = _scorer()
    for i in range(treescore.MEMO_ENTRIES + 10):
        cat = np.empty((3, C), dtype=object)
        cat[:] = "x"
        cat[:, 0] = _strings(["travel", f"new{i}", "meals"])
        np.testing.assert_array_equal(_encoded(trees, cat), _reference(trees, cat))
    held = trees.memo._memo  # the bound is the point of this test
    assert len(held) == treescore.MEMO_ENTRIES
    last = next(reversed(held.values()))
    assert last.keep.tolist() == ["travel", f"new{treescore.MEMO_ENTRIES + 9}", "meals"]
    assert treescore.object_ids(last.keep[:, None])[0].tobytes() == last.raw
