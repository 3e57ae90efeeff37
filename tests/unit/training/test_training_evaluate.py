"""Ranking metrics on hand-computed examples."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from rankswap import featurespec as fs
from rankswap_training.dataset import PairSet
from rankswap_training.evaluate import METRICS, evaluate_scores, metrics_from_ranks, positive_ranks


def _pairs(group: list[int], label: list[int]) -> PairSet:
    n = len(group)
    return PairSet(
        num=np.zeros((n, len(fs.NUMERIC_FEATURES)), np.float32),
        cat=np.empty((n, len(fs.CATEGORICAL_FEATURES)), object),
        label=np.array(label, np.float32),
        group=np.array(group, np.int64),
        item_ids=np.arange(n, dtype=np.int64),
        exp_rows=np.arange(max(group) + 1, dtype=np.int64),
        snapshot=[date(2026, 1, 1)] * (max(group) + 1),
    )


def test_ranks_and_metrics() -> None:
    pairs = _pairs([0, 0, 0, 1, 1, 1, 1, 1, 1, 1], [0, 1, 0, 0, 0, 0, 0, 0, 0, 1])
    scores = [0.9, 0.5, 0.1, 7, 6, 5, 4, 3, 2, 1]  # positive 2nd of 3; last of 7
    ranks = positive_ranks(scores, pairs)
    assert ranks.tolist() == [2, 7]
    m = metrics_from_ranks(ranks)
    assert m["recall@1"] == 0 and m["recall@5"] == 0.5
    assert m["ndcg@5"] == pytest.approx((1 / math.log2(3)) / 2)
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 7) / 2)


def test_ties_are_broken_at_random_not_by_position() -> None:
    n_groups = 400
    pairs = _pairs(list(np.repeat(np.arange(n_groups), 4)), [1, 0, 0, 0] * n_groups)
    ranks = positive_ranks(np.zeros(4 * n_groups), pairs)  # all tied
    assert 2.2 < ranks.mean() < 2.8  # expected 2.5, not 1


def test_subsets() -> None:
    pairs = _pairs([0, 0, 1, 1], [1, 0, 0, 1])
    res = evaluate_scores(
        [1, 0, 1, 0], pairs, {"all": np.array([True, True]), "second": np.array([False, True])}
    )
    assert res["all"]["recall@1"] == 0.5 and res["second"]["recall@1"] == 0.0
    assert set(METRICS) <= set(res["all"])


def test_new_sibling_subsets() -> None:
    from rankswap_training.evaluate import sibling_subsets
    from rankswap_training.features import make_history

    items = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "tenant_id": "a",
            "code": ["M", "MI", "ME", "T", "OLD"],
            "name": ["会議費", "会議費（社内）", "会議費（社外）", "タクシー代", "書籍"],
            "category_id": [1, 1, 1, 2, 3],
            "category": ["c1", "c1", "c1", "c2", "c3"],
            "account_code": "6120",
            "created_at": pd.Timestamp("2026-01-01"),
            "active": [False, True, True, True, True],
        }
    )
    raw = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "tenant_id": "a",
            "employee_id": 7,
            "vendor_id": None,
            "item_id": [2, 3, 4, 5],
            "category_id": [1, 1, 2, 3],
            "description": ["社内打合せ", "顧客と会議", "タクシー", "本"],
            "amount": 1000.0,
            "expense_date": date(2026, 1, 2),
            "created_at": pd.Timestamp("2026-01-02 12:00"),
            "department": "",
            "industry": "",
        }
    )
    history = make_history(raw, items)
    # every query lists every item; item 1 (inactive) is no sibling
    group = np.repeat(np.arange(4), 5)
    item_ids = np.tile(np.arange(1, 6), 4)
    true_item = history.expenses["item_id"].to_numpy()
    pairs = PairSet(
        num=np.zeros((20, len(fs.NUMERIC_FEATURES)), np.float32),
        cat=np.empty((20, len(fs.CATEGORICAL_FEATURES)), object),
        label=(item_ids == true_item[group]).astype(np.float32),
        group=group.astype(np.int64),
        item_ids=item_ids.astype(np.int64),
        exp_rows=np.arange(4, dtype=np.int64),
        snapshot=[date(2026, 1, 2)] * 4,
    )
    cold = np.array([True, True, True, False])
    subsets = sibling_subsets(history, pairs, cold)
    # 社内 / 社外 are each other's siblings; タクシー代 and 書籍 are alone in their category
    assert subsets["new_sibling"].tolist() == [True, True, False, False]
    # "社内打合せ" names the variant (社内 is in no sibling's name); "顧客と会議" does not
    assert subsets["new_sibling_named"].tolist() == [True, False, False, False]


def test_serving_subsets_rank_among_active_candidates_only() -> None:
    from rankswap_training.evaluate import evaluate_scores

    pairs = _pairs([0, 0, 0], [0, 1, 0])
    scores = [0.9, 0.5, 0.1]  # an inactive original outscores the true (new) item
    active = np.array([False, True, True])
    subsets = {"cold_start": np.array([True]), "new_sibling": np.array([True])}
    got = evaluate_scores(scores, pairs, subsets, active)
    assert got["cold_start"]["recall@1"] == 0.0  # the hold-out list as it was
    assert got["new_sibling"]["recall@1"] == 1.0  # what serving ranks today
