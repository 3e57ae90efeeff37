"""The comparison arithmetic: per-request measures, PSI, quantiles, merging."""

from __future__ import annotations

import numpy as np
import pytest

from rankswap.comparison import (
    LATENCY_EDGES_S,
    SCORE_EDGES,
    Comparison,
    bucket,
    compare_request,
    histogram,
    merge,
    psi,
    quantile,
    spearman_of_top,
    standardise,
)

pytestmark = pytest.mark.timeout(10)


def _f32(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def test_identical_rankings_agree_fully() -> None:
    scores = _f32(0.1, 0.9, 0.5, 0.3)
    one = compare_request(
        [1, 2, 3], scores, [1, 2, 3], scores, active_seconds=0.001, reference_seconds=0.001
    )
    assert one.top1_agrees and one.topk_overlap == 1.0 and one.rank_correlation == 1.0
    assert one.active_scores == one.reference_scores


def test_reversed_top_k_has_full_overlap_but_negative_correlation() -> None:
    active = _f32(0.0, 3.0, 2.0, 1.0)
    reference = _f32(0.0, 1.0, 2.0, 3.0)
    one = compare_request(
        [1, 2, 3], reference, [3, 2, 1], active, active_seconds=0.0, reference_seconds=0.0
    )
    assert not one.top1_agrees
    assert one.topk_overlap == 1.0
    assert one.rank_correlation == -1.0


def test_overlap_counts_shared_items_over_k() -> None:
    scores = _f32(1, 2, 3, 4, 5)
    one = compare_request(
        [4, 3, 2], scores, [4, 1, 0], scores, active_seconds=0.0, reference_seconds=0.0
    )
    assert one.top1_agrees and one.topk_overlap == pytest.approx(1 / 3)


def test_rank_correlation_needs_two_items() -> None:
    assert spearman_of_top([0], _f32(1.0)) is None
    assert spearman_of_top([0, 1], _f32(2.0, 1.0)) == 1.0
    assert spearman_of_top([0, 1], _f32(1.0, 2.0)) == -1.0


def test_histogram_puts_outliers_in_the_outer_bins() -> None:
    counts = histogram(_f32(-100.0, 0.0, 0.25, 100.0))
    assert len(counts) == len(SCORE_EDGES) + 1
    assert counts[0] == 1 and counts[-1] == 1 and sum(counts) == 4


def test_psi_is_zero_for_the_same_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(3)
    base = histogram(rng.normal(0, 1, 5000).astype(np.float32))
    same = histogram(rng.normal(0, 1, 5000).astype(np.float32))
    moved = histogram(rng.normal(1.5, 1, 5000).astype(np.float32))
    assert psi(base, base) == 0.0
    assert (psi(base, same) or 1) < 0.05
    assert (psi(base, moved) or 0) > 0.5
    assert psi(base, [0] * len(base)) is None


def test_latency_quantile_is_the_bucket_bound() -> None:
    counts = [0] * (len(LATENCY_EDGES_S) + 1)
    counts[bucket(0.0009)] += 98
    counts[bucket(0.02)] += 2
    assert quantile(counts, 0.5) == 0.001
    assert quantile(counts, 0.99) == 0.025
    assert quantile([0] * len(counts), 0.99) is None
    assert bucket(5.0) == len(LATENCY_EDGES_S)


def test_accumulated_ratios_and_merge_adds_everything() -> None:
    scores = _f32(0.0, 1.0, 2.0)
    agree = compare_request(
        [2, 1], scores, [2, 1], scores, active_seconds=0.001, reference_seconds=0.002
    )
    differ = compare_request(
        [2, 1], scores, [0, 1], scores, active_seconds=0.001, reference_seconds=0.002
    )
    a = Comparison(active="new", reference="old", since="2026-12-01T10:00:00Z", offered=10)
    a.add(agree)
    b = Comparison(active="new", reference="old", since="2026-12-01T09:00:00Z", offered=5)
    b.add(differ)
    b.active_errors = 1
    other = Comparison(active="old", reference="older", since="2026-12-01T08:00:00Z")
    merged = merge([a, other, b])
    assert [(c.active, c.reference) for c in merged] == [("new", "old"), ("old", "older")]
    m = merged[0]
    assert (m.compared, m.offered, m.since) == (2, 15, "2026-12-01T09:00:00Z")
    assert m.top1_agreement == 0.5 and m.topk_overlap == 0.75
    assert m.active_error_rate == pytest.approx(1 / 15)
    assert m.p99_ratio == 0.5  # 1 ms bucket over 2 ms bucket
    assert a.compared == 1, "merge does not change its inputs"
    doc = m.model_dump(mode="json")
    assert doc["psi"] == 0.0 and doc["top1_agreement"] == 0.5
    assert Comparison.model_validate(doc) == m, "the computed fields are ignored when parsed"


def test_the_psi_is_of_standardised_scores_so_scale_and_offset_do_not_count() -> None:
    rng = np.random.default_rng(5)
    scores = rng.gamma(2.0, 1.0, 300).astype(np.float32)  # skewed, as lambdarank scores are
    top = [int(i) for i in np.argsort(-scores)[:5]]
    same_ranking = compare_request(
        top, scores, top, scores * 7 - 40, active_seconds=0.0, reference_seconds=0.0
    )
    acc = Comparison(active="new", reference="old", since="x")
    acc.add(same_ranking)
    assert acc.psi is not None and acc.psi < 1e-3, "a rescaled, shifted model is not a shift"
    assert sum(acc.active_scores) == 300 and len(acc.active_scores) == len(SCORE_EDGES) + 1
    # Another shape of the spread around the request's mean is one.
    other = rng.normal(0.0, 1.0, 300).astype(np.float32) ** 3
    shaped = Comparison(active="new", reference="old", since="x")
    shaped.add(compare_request(top, scores, top, other, active_seconds=0.0, reference_seconds=0.0))
    assert shaped.psi is not None and shaped.psi > 0.25


def test_standardised_scores_of_a_constant_or_single_candidate_are_zero() -> None:
    assert standardise(_f32(3.0, 3.0, 3.0)).tolist() == [0.0, 0.0, 0.0]
    assert standardise(_f32(1.5)).tolist() == [0.0]
    assert standardise(_f32()).tolist() == []
    z = standardise(_f32(1.0, 2.0, 3.0))
    assert abs(float(z.mean())) < 1e-12 and abs(float(z.std()) - 1.0) < 1e-12
