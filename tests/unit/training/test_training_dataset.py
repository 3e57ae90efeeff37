"""Training pairs: candidate sets as of filing time, and point-in-time features (no leakage)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from rankswap import featurespec as fs
from rankswap.productdb import ProductDB
from rankswap_training import dataset, features

DAY = date(2026, 3, 10)


@pytest.fixture(scope="module")
def history(small_db_url: str) -> features.History:
    with ProductDB(small_db_url) as db:
        return features.load_history(db, before=date(2026, 3, 31))


def _pairs(history: features.History, rows: np.ndarray, negatives: int | None) -> dataset.PairSet:
    snaps = [date(2026, 3, 1), DAY, date(2026, 3, 20)]
    return dataset.build_pairs(
        history,
        rows,
        snaps,
        lambda d: features.build_tables(history, d),
        negatives=negatives,
        rng=np.random.default_rng(1),
    )


def test_candidates_existed_when_filed_and_positive_is_there(history: features.History) -> None:
    rows = np.flatnonzero(history.days >= fs.to_day(date(2026, 3, 1)))[:200]
    for negatives in (None, 8):
        p = _pairs(history, rows, negatives)
        assert np.all(np.diff(p.group) >= 0)
        assert np.bincount(p.group, weights=p.label).tolist() == [1.0] * p.n_groups
        created = dict(zip(history.items["id"], history.items["created_s"], strict=True))
        filed = history.expenses["created_s"].to_numpy()[p.exp_rows][p.group]
        assert all(created[int(i)] <= f for i, f in zip(p.item_ids, filed, strict=True))
        # each expense uses the latest snapshot on or before its date
        e_days = history.days[p.exp_rows]
        for d, s in zip(e_days, p.snapshot, strict=True):
            assert fs.to_day(s) <= d
            assert d < fs.to_day(DAY) or fs.to_day(s) >= fs.to_day(DAY)


def test_sampled_lists_are_smaller_than_full_lists(history: features.History) -> None:
    rows = np.flatnonzero(history.days >= fs.to_day(date(2026, 3, 1)))[:100]
    full = _pairs(history, rows, None)
    sampled = _pairs(history, rows, 8)
    assert len(sampled) < len(full)


def test_no_leak_from_the_expense_day_or_later(history: features.History) -> None:
    """Features of expenses dated DAY are identical when their own chosen items and every
    other expense dated DAY or later are changed: nothing on or after the date is used."""
    e = history.expenses
    day = fs.to_day(DAY)
    same_day = np.flatnonzero(history.days == day)
    assert len(same_day) > 4
    targets = same_day[: len(same_day) // 2]
    tampered = e.copy()
    later = (tampered["day"].to_numpy() >= day) & ~np.isin(np.arange(len(e)), targets)
    assert later.sum() > 100
    # make every other expense from DAY on look like the first target's, so a leak would show
    first = e.iloc[targets[0]]
    for col in ("tenant_id", "employee_id", "vendor_id", "item_id", "category_id", "industry"):
        tampered.loc[later, col] = first[col]
    tampered.loc[later, "amount"] = 1e9
    tampered.loc[later, "description"] = str(first["description"]) + " leak"
    # and change the targets' own labels to their tenant's oldest item (context unchanged)
    items = history.items.sort_values("created_s")
    oldest = items.groupby("tenant_id")["id"].first()
    tampered.loc[targets, "item_id"] = oldest.loc[e["tenant_id"].iloc[targets]].to_numpy()
    other = replace(history, expenses=tampered)
    a = _pairs(history, targets, None)
    b = _pairs(other, targets, None)
    np.testing.assert_array_equal(a.item_ids, b.item_ids)
    np.testing.assert_array_equal(a.num, b.num)
    np.testing.assert_array_equal(a.cat, b.cat)
