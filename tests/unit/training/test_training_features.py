"""Feature aggregates on a tiny hand-made history, and point-in-time correctness."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest
from tests.unit.training import handmade
from tests.unit.training.handmade import AS_OF

from rankswap import featurespec as fs
from rankswap_training.errors import NoData
from rankswap_training.features import build_tables, require_history


def _row(tables: fs.FeatureTables, name: str, key: int) -> dict[str, float]:
    t = tables.tables[name]
    pos, found = t.lookup(np.array([key], dtype=np.int64))
    assert found[0], f"{name}: no row for key {key}"
    return {c: float(v[pos[0]]) for c, v in t.columns.items()}


def _absent(tables: fs.FeatureTables, name: str, key: int) -> bool:
    _, found = tables.tables[name].lookup(np.array([key], dtype=np.int64))
    return not bool(found[0])


@pytest.fixture(scope="module")
def tables() -> fs.FeatureTables:
    return build_tables(handmade.history(), AS_OF)


def test_item_aggregates(tables: fs.FeatureTables) -> None:
    it = _row(tables, "item", 10)
    assert (it["cnt_30d"], it["cnt_90d"], it["cnt_365d"]) == (2, 2, 2)
    assert it["share_90d"] == pytest.approx(2 / 4)  # 4 tenant expenses in 90 d
    assert it["n_users_90d"] == 1
    assert it["last_day"] == fs.to_day(date(2026, 1, 20))
    logs = [math.log1p(1000.0), math.log1p(3000.0)]
    assert it["amt_mean"] == pytest.approx(sum(logs) / 2, rel=1e-6)
    assert it["amt_std"] == pytest.approx(np.std(logs, ddof=1), rel=1e-5)
    assert _row(tables, "item", 12)["amt_std"] == 0.0  # one use: std defined as 0
    assert _absent(tables, "item", 13)  # never used


def test_pair_aggregates(tables: fs.FeatureTables) -> None:
    e10 = _row(tables, "emp_item", int(fs.pair_key(100, 10)))
    e11 = _row(tables, "emp_item", int(fs.pair_key(100, 11)))
    assert e10["cnt_365d"] == 2 and e10["share_365d"] == pytest.approx(2 / 3)
    assert (e11["recency_rank"], e10["recency_rank"]) == (1, 2)  # 11 used last
    v10 = _row(tables, "vendor_item", int(fs.pair_key(200, 10)))
    assert v10["share_365d"] == pytest.approx(2 / 3)
    assert _absent(tables, "vendor_item", int(fs.pair_key(-1, 12)))  # no vendor: not counted
    assert _row(tables, "emp_cat", int(fs.pair_key(100, 1)))["share_365d"] == 1.0
    assert _row(tables, "vendor_cat", int(fs.pair_key(200, 1)))["share_365d"] == 1.0
    assert _row(tables, "employee", 100)["cnt_365d"] == 3  # the 2025-01-01 row is too old
    assert _row(tables, "category", 1)["share_90d"] == pytest.approx(3 / 4)


def test_term_category_shares(tables: fs.FeatureTables) -> None:
    vocab = list(tables.terms)

    def share(term: str, cat: int) -> float:
        return _row(tables, "term_cat", int(fs.pair_key(vocab.index(term), cat)))["share"]

    assert share("taxi", 1) == pytest.approx(1 / 3)  # n / (n_term + 2)
    assert share("タク", 1) == pytest.approx(2 / 4)
    assert share(fs.industry_term("taxi"), 1) == pytest.approx(3 / 5)
    assert share(fs.department_term("開発部"), 2) == pytest.approx(1 / 3)
    assert "old" not in vocab  # outside the 365-day window


def test_nothing_on_or_after_as_of_contributes(tables: fs.FeatureTables) -> None:
    with_future = build_tables(handmade.history(handmade.future_rows()), AS_OF)
    assert list(with_future.terms) == list(tables.terms)
    for name, t in tables.tables.items():
        other = with_future.tables[name]
        np.testing.assert_array_equal(t.keys, other.keys, err_msg=name)
        for c in t.columns:
            np.testing.assert_array_equal(t.columns[c], other.columns[c], err_msg=f"{name}.{c}")


def test_no_history_is_a_clear_error() -> None:
    with pytest.raises(NoData, match="no expenses"):
        require_history(handmade.history(), date(2024, 6, 1))


def test_a_date_before_the_first_expense_gives_empty_tables() -> None:
    # the model pipeline builds snapshots as of every 7th day of its window: on a short
    # history the first ones precede every expense (issue 15 item 7: this raised a TypeError)
    history = handmade.history()
    assert history.first_day == date(2025, 1, 1)
    for as_of in (date(2024, 12, 1), history.first_day):
        empty = build_tables(history, as_of)
        assert set(empty.row_counts.values()) == {0}, empty.row_counts
        assert empty.as_of == as_of and list(empty.terms) == []
    assert require_history(history, AS_OF) == date(2026, 1, 1)  # inside 365 d
