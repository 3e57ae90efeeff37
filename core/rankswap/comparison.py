"""How two bundles rank the same live requests: per-request measures and a mergeable summary.

A ranker pod that serves bundle N and holds N-1 warm scores a sample of its live requests with
both (``rankswap_ranker.shadow``); this module is the arithmetic, pure and shared: the ranker
accumulates one :class:`Comparison` per (active, reference) pair, the coordinator merges the
workers' accumulators, and the operator merges the canary pods' and judges them against
``spec.rollout.analysis``. Everything in a :class:`Comparison` is a count, a sum or a histogram
with fixed edges, so merging is adding.

Measures, per compared request (``k`` = the request's ``top_k``, at most the candidates):

* top-1 agreement: both bundles put the same item first;
* top-k overlap: ``|top_k(active) ∩ top_k(reference)| / k``;
* rank correlation of the top-k: Spearman's rho between the active bundle's order of its top-k
  items and the reference bundle's order of the same items (requests with ``k >= 2``);
* score shift: the population stability index (PSI) of the two bundles' *standardised* scores
  over every candidate: each request's scores as z-scores within the request (minus their
  mean, over their standard deviation), on fixed bins (:data:`SCORE_EDGES`). Raw scores of a
  lambdarank model have no fixed scale or offset between two retrains (two good retrains of the
  demo world differ by a raw-score PSI of ~1.3), so the raw PSI flags every retrain; the
  standardised one compares the *shape* of each request's score distribution (how the
  candidates are spread around the request's mean), which a rescaled or shifted model keeps
  and a broken one does not;
* errors and scoring latency per bundle (the stages that depend on the bundle: feature gather,
  inputs, model), latency on fixed buckets (:data:`LATENCY_EDGES_S`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, computed_field

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# NumPy is imported only by the per-request measures (:func:`spearman_of_top`,
# :func:`histogram`), which run in the ranker: the operator merges and judges
# :class:`Comparison` documents and its image carries no NumPy
# (tests/node/test_image_dependencies.py).

SCORE_EDGES: tuple[float, ...] = tuple(round(-4.0 + 0.2 * i, 1) for i in range(41))
"""Inner bin edges of the standardised-score histograms (z from -4 to 4 by 0.2; below and
above go to the two outer bins): 42 bins. (Before standardisation the histograms had 34 bins
of raw scores; histograms of different lengths are never merged or compared.)"""

LATENCY_EDGES_S: tuple[float, ...] = (
    0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
"""Upper bounds of the latency buckets (the last bucket is everything above 1 s)."""

PSI_EPSILON = 1e-4
"""Share given to an empty bin so the PSI stays finite."""


def _zeros(edges: Sequence[float]) -> list[int]:
    return [0] * (len(edges) + 1)


class Comparison(BaseModel):
    """What one (active, reference) pair has accumulated since the active bundle became active.

    Counts and histograms only (merged by adding); the ratios are computed from them."""

    active: str = Field(description="Bundle id of the bundle that answered the requests.")
    reference: str = Field(description="Bundle id of the warm bundle they were compared with.")
    since: str = Field(description="When this pair started accumulating (UTC, ISO 8601).")
    cohort: str | None = Field(
        None,
        description="During a tenant canary: the fingerprint of the cohort assignment whose "
        "tenants the active (cohort) bundle served; only their requests are compared.",
    )
    offered: int = Field(0, description="Live requests answered by the active bundle.")
    sampled: int = Field(0, description="Of those, picked for comparison.")
    dropped: int = Field(0, description="Picked but dropped: the comparison queue was full.")
    compared: int = Field(0, description="Scored by both bundles and compared.")
    top1_agreements: int = 0
    topk_overlap_sum: float = 0.0
    rank_correlation_sum: float = 0.0
    rank_correlation_n: int = 0
    active_errors: int = Field(0, description="Live requests the active bundle failed (500).")
    reference_errors: int = Field(0, description="Sampled requests the reference failed.")
    active_scores: list[int] = Field(default_factory=lambda: _zeros(SCORE_EDGES))
    reference_scores: list[int] = Field(default_factory=lambda: _zeros(SCORE_EDGES))
    active_latency: list[int] = Field(default_factory=lambda: _zeros(LATENCY_EDGES_S))
    reference_latency: list[int] = Field(default_factory=lambda: _zeros(LATENCY_EDGES_S))

    # Derived -------------------------------------------------------------------------------

    @computed_field  # type: ignore[prop-decorator]
    @property
    def top1_agreement(self) -> float | None:
        return self.top1_agreements / self.compared if self.compared else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def topk_overlap(self) -> float | None:
        return round(self.topk_overlap_sum / self.compared, 6) if self.compared else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rank_correlation(self) -> float | None:
        n = self.rank_correlation_n
        return round(self.rank_correlation_sum / n, 6) if n else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def psi(self) -> float | None:
        return psi(self.reference_scores, self.active_scores)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def active_error_rate(self) -> float | None:
        return self.active_errors / self.offered if self.offered else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reference_error_rate(self) -> float | None:
        tried = self.compared + self.reference_errors
        return self.reference_errors / tried if tried else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def active_p99_s(self) -> float | None:
        return quantile(self.active_latency, 0.99)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reference_p99_s(self) -> float | None:
        return quantile(self.reference_latency, 0.99)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def p99_ratio(self) -> float | None:
        """p99 latency of the active bundle over the reference's (on a canary pod: new/old)."""
        new, old = self.active_p99_s, self.reference_p99_s
        return round(new / old, 4) if new is not None and old else None

    # Accumulating --------------------------------------------------------------------------

    def add(self, one: RequestComparison) -> None:
        """Count one compared request."""
        self.compared += 1
        self.top1_agreements += int(one.top1_agrees)
        self.topk_overlap_sum += one.topk_overlap
        if one.rank_correlation is not None:
            self.rank_correlation_sum += one.rank_correlation
            self.rank_correlation_n += 1
        for hist, add in (
            (self.active_scores, one.active_scores),
            (self.reference_scores, one.reference_scores),
        ):
            for i, n in enumerate(add):
                hist[i] += n
        self.active_latency[bucket(one.active_seconds)] += 1
        self.reference_latency[bucket(one.reference_seconds)] += 1


def merge(comparisons: Iterable[Comparison]) -> list[Comparison]:
    """One :class:`Comparison` per (active, reference, cohort): the sums of those given,
    ``since`` the earliest. Order: first appearance."""
    out: dict[tuple[str, str, str | None], Comparison] = {}
    for c in comparisons:
        key = (c.active, c.reference, c.cohort)
        have = out.get(key)
        if have is None:
            out[key] = c.model_copy(deep=True)
            continue
        have.since = min(have.since, c.since)
        for name in _SUMMED:
            setattr(have, name, getattr(have, name) + getattr(c, name))
        for name in _HISTOGRAMS:
            mine: list[int] = getattr(have, name)
            theirs: list[int] = getattr(c, name)
            if len(mine) == len(theirs):
                setattr(have, name, [a + b for a, b in zip(mine, theirs, strict=True)])
    return list(out.values())


_SUMMED = (
    "offered",
    "sampled",
    "dropped",
    "compared",
    "top1_agreements",
    "topk_overlap_sum",
    "rank_correlation_sum",
    "rank_correlation_n",
    "active_errors",
    "reference_errors",
)
_HISTOGRAMS = ("active_scores", "reference_scores", "active_latency", "reference_latency")


class RequestComparison(BaseModel):
    """The measures of one request scored by both bundles."""

    top1_agrees: bool
    topk_overlap: float
    rank_correlation: float | None
    active_scores: list[int]
    reference_scores: list[int]
    active_seconds: float
    reference_seconds: float


def compare_request(
    active_top: Sequence[int],
    reference_scores: npt.NDArray[np.float32],
    reference_top: Sequence[int],
    active_scores: npt.NDArray[np.float32],
    *,
    active_seconds: float,
    reference_seconds: float,
) -> RequestComparison:
    """Compare one request: ``*_top`` are candidate indices best first (the same ``k`` for
    both), ``*_scores`` every candidate's score from each bundle (same candidate order)."""
    k = len(active_top)
    top1 = bool(k and len(reference_top) and active_top[0] == reference_top[0])
    overlap = len(set(active_top) & set(reference_top)) / k if k else 1.0
    return RequestComparison(
        top1_agrees=top1 if k else True,
        topk_overlap=overlap,
        rank_correlation=spearman_of_top(active_top, reference_scores),
        active_scores=histogram(standardise(active_scores)),
        reference_scores=histogram(standardise(reference_scores)),
        active_seconds=active_seconds,
        reference_seconds=reference_seconds,
    )


def spearman_of_top(
    active_top: Sequence[int], reference_scores: npt.NDArray[np.float32]
) -> float | None:
    """Spearman's rho between the active order of its top-k items (1..k) and the reference
    bundle's order of the same items (by its scores; ties by position). None when ``k < 2``."""
    import numpy as np

    k = len(active_top)
    if k < 2:
        return None
    ref = np.asarray(reference_scores, dtype=np.float64)[list(active_top)]
    # The reference's order of these k items, best first; stable for ties.
    order = np.argsort(-ref, kind="stable")
    ref_rank = np.empty(k, dtype=np.float64)
    ref_rank[order] = np.arange(k, dtype=np.float64)
    d = ref_rank - np.arange(k, dtype=np.float64)
    return float(1.0 - 6.0 * float(np.sum(d * d)) / (k * (k * k - 1)))


def standardise(scores: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """One request's scores as z-scores within the request: ``(s - mean) / std``; all zeros
    when the scores do not vary (one candidate, or a constant model)."""
    import numpy as np

    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        return values
    centred = values - values.mean()
    std = float(np.sqrt(np.mean(centred * centred)))
    if not np.isfinite(std) or std < 1e-12:
        return np.zeros_like(values)
    z: npt.NDArray[np.float64] = centred / std
    return z


def histogram(scores: npt.NDArray[Any]) -> list[int]:
    """Counts of ``scores`` per bin of :data:`SCORE_EDGES` (outer bins take the rest)."""
    import numpy as np

    idx = np.searchsorted(np.asarray(SCORE_EDGES), np.asarray(scores, dtype=np.float64), "right")
    return [int(n) for n in np.bincount(idx, minlength=len(SCORE_EDGES) + 1)]


def bucket(seconds: float) -> int:
    """Index of the latency bucket of ``seconds``."""
    for i, edge in enumerate(LATENCY_EDGES_S):
        if seconds <= edge:
            return i
    return len(LATENCY_EDGES_S)


def psi(expected: Sequence[int], actual: Sequence[int]) -> float | None:
    """Population stability index of ``actual`` against ``expected`` (two histograms on the same
    bins): ``sum((a - e) * ln(a / e))`` over the bins' shares, an empty bin counted as
    :data:`PSI_EPSILON`. None when either is empty. Rule of thumb: < 0.1 stable, > 0.25 shifted."""
    te, ta = sum(expected), sum(actual)
    if not te or not ta or len(expected) != len(actual):
        return None
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        pe = max(e / te, PSI_EPSILON)
        pa = max(a / ta, PSI_EPSILON)
        total += (pa - pe) * math.log(pa / pe)
    return round(total, 6)


def quantile(counts: Sequence[int], q: float) -> float | None:
    """The upper bound of the latency bucket holding quantile ``q`` (the last bucket, which has
    no bound, reports twice the last edge). None without observations."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank and n:
            return LATENCY_EDGES_S[i] if i < len(LATENCY_EDGES_S) else 2 * LATENCY_EDGES_S[-1]
    return 2 * LATENCY_EDGES_S[-1]
