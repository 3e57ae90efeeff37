"""Ranking metrics on hand-computed examples."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
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
