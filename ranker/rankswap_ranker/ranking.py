"""One ranking, start to end, with the time of each stage (the benchmark reads them too).

Stages: ``db`` (context attributes + the tenant's active items with their codes and names, from
the product DB, cached per data version),
``features`` (vectorised feature gather from the memory-mapped tables), ``inputs`` (counting
defaults and unknowns; the model input is already the two arrays ``num`` and ``cat``), ``model``
(ONNX), ``topk`` (``argpartition``), ``serialise`` (the top-k's labels from the candidate
list, JSON bytes: :func:`answer_body`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from rankswap import featurespec as fs
from rankswap_ranker.bundle import Bundle, BundleRef
from rankswap_ranker.metrics import RankerMetrics


class CandidateSource(Protocol):
    """Where contexts and candidates come from: :class:`rankswap.productdb.ProductDB` fits
    (its ``rank_inputs``: both from one freshness check of the database)."""

    def rank_inputs(
        self, entered: fs.RankContext, *, with_names: bool = True
    ) -> tuple[fs.RankContext, fs.Candidates]: ...


@dataclass(frozen=True)
class RankQuery:
    tenant_id: str
    employee_id: int | None
    vendor_id: int | None
    description: str
    amount: float
    expense_date: date
    top_k: int

    def entered(self) -> fs.RankContext:
        """What the user entered, for the product DB to complete (``make_context``)."""
        return fs.RankContext(
            tenant_id=self.tenant_id,
            employee_id=self.employee_id,
            vendor_id=self.vendor_id,
            description=self.description,
            amount=self.amount,
            expense_date=self.expense_date,
        )


@dataclass
class RankOutcome:
    body: bytes
    bundle: Bundle
    candidates: int
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    query: RankQuery | None = None
    context: fs.RankContext | None = None
    cands: fs.Candidates | None = None
    scores: npt.NDArray[np.float32] | None = None
    top: Any = None
    """The inputs and results behind ``body`` (references, no copies): what a shadow
    comparison needs to score the same request with another bundle."""


_JSON = json.JSONEncoder(ensure_ascii=False)
"""``json.dumps(..., ensure_ascii=False)`` without building an encoder per call."""


def rank(bundle: Bundle, source: CandidateSource, q: RankQuery) -> RankOutcome:
    """Rank the tenant's active items for one expense with ``bundle`` (used to the end)."""
    t0 = time.perf_counter()
    ctx, cands = source.rank_inputs(q.entered(), with_names=True)  # names: item-text features
    t1 = time.perf_counter()
    inputs = bundle.assemble(ctx, cands)
    t2 = time.perf_counter()
    stats = input_stats(bundle, ctx, cands, inputs)
    t3 = time.perf_counter()
    scores = bundle.score(inputs)
    t4 = time.perf_counter()
    best = bundle.top_k(scores, cands.item_ids, q.top_k)
    t5 = time.perf_counter()
    body = answer_body(q.tenant_id, bundle, cands, best, scores)
    t6 = time.perf_counter()
    return RankOutcome(
        body=body,
        bundle=bundle,
        candidates=len(cands),
        timings={
            "db": t1 - t0,
            "features": t2 - t1,
            "inputs": t3 - t2,
            "model": t4 - t3,
            "topk": t5 - t4,
            "serialise": t6 - t5,
        },
        stats=stats,
        query=q,
        context=ctx,
        cands=cands,
        scores=scores,
        top=best,
    )


def answer_body(
    tenant_id: str,
    bundle: Bundle,
    cands: fs.Candidates,
    best: Any,
    scores: npt.NDArray[np.float32],
) -> bytes:
    """The response body: what ``json.dumps(..., ensure_ascii=False)`` writes for
    ``{"tenant_id", "items": [{"id", "code", "name", "category", "score"}, ...], "candidates",
    "bundle_id", "model_version", "features_version"}``, byte for byte, with each item's text
    up to its score taken from :func:`item_prefixes` (the labels of the candidate list that was
    ranked, read with names for the item-text features: no second DB read, the same snapshot).
    Scores are rounded to 6 decimals."""
    ref = bundle.ref
    prefixes = item_prefixes(cands)
    head, tail = cands.derived(
        ("answer_frame", tenant_id, ref.bundle_id), lambda: _answer_frame(tenant_id, ref, cands)
    )
    items = []
    for i, score in zip(best.tolist(), scores[best].tolist(), strict=True):
        prefix = prefixes.get(i)
        if prefix is None:
            prefix = prefixes.setdefault(i, _item_prefix(cands, i))
        value = round(score, 6)
        # json writes a finite float as its repr (NaN / Infinity otherwise)
        text = float.__repr__(value) if math.isfinite(value) else _JSON.encode(value)
        items.append(f"{prefix}{text}}}")
    return f"{head}{', '.join(items)}{tail}".encode()


def _answer_frame(tenant_id: str, ref: BundleRef, cands: fs.Candidates) -> tuple[str, str]:
    """The body's text before and after its items: the same for every answer of one bundle
    over one candidate list (kept on the list, :meth:`Candidates.derived`)."""
    return (
        f'{{"tenant_id": {_JSON.encode(tenant_id)}, "items": [',
        f'], "candidates": {len(cands)}, "bundle_id": {_JSON.encode(ref.bundle_id)}, '
        f'"model_version": {_JSON.encode(ref.model.version)}, '
        f'"features_version": {_JSON.encode(ref.features.version)}}}',
    )


def item_prefixes(cands: fs.Candidates) -> dict[int, str]:
    """Per candidate row, the JSON text of its answer item up to the score
    (``{"id": 7, "code": "...", "name": "...", "category": "...", "score": ``), built the
    first time the row is in a top-k; kept on the candidate list (the product DB's cached
    snapshot: its labels do not change), at most one entry per candidate."""
    return cands.derived("item_prefixes", dict)


def _item_prefix(cands: fs.Candidates, i: int) -> str:
    enc = _JSON.encode
    return (
        f'{{"id": {int(cands.item_ids[i])}, "code": {enc(str(cands.codes[i]))}, '
        f'"name": {enc(str(cands.names[i]))}, "category": {enc(str(cands.categories[i]))}, '
        '"score": '
    )


def input_stats(
    bundle: Bundle, ctx: fs.RankContext, cands: fs.Candidates, inputs: fs.ModelInput
) -> dict[str, int]:
    """Rows that took documented defaults, and values the bundle has not seen. The candidates'
    part (:func:`candidate_stats`) is memoised on the candidates per (feature tables, encoder
    vocabulary) of the bundle."""
    stats = {
        "missing_item": inputs.item_default_rows,
        "missing_emp_item": inputs.emp_item_default_rows,
        "missing_employee": 1 if inputs.unknown_employee_rows else 0,
        "missing_vendor": 1 if inputs.unknown_vendor_rows else 0,
        "missing_category": 0,
        "unknown_term": inputs.unknown_terms,
    }
    vocab = bundle.encoder_vocab
    # keyed by the tables' token and the vocabulary's id; the entry holds the vocabulary, so
    # the id is not reused by another while the entry lives
    key = ("input_stats", bundle.tables.token(), id(vocab))
    _, part = cands.derived(key, lambda: (vocab, candidate_stats(bundle, cands)))
    stats.update(part)
    for name, value in (
        ("vendor_industry", ctx.vendor_industry),
        ("employee_department", ctx.employee_department),
    ):
        known = vocab.get(name)
        if known is not None and value and value not in known:
            stats[f"unknown_{name}"] = 1
    return stats


def candidate_stats(bundle: Bundle, cands: fs.Candidates) -> dict[str, int]:
    """The candidates' rows without a category-table row, and (when the bundle lists its
    encoder's categories) the rows whose category / account code the encoder has not seen."""
    stats: dict[str, int] = {}
    if not len(cands):
        return stats
    _, found = bundle.tables.tables["category"].lookup(cands.category_ids)
    stats["missing_category"] = int(found.shape[0] - np.count_nonzero(found))
    vocab = bundle.encoder_vocab
    # Categories repeat across a tenant's items: check each distinct category id once.
    ids, first = np.unique(cands.category_ids, return_index=True)
    for name, column in (("category", cands.categories), ("account_code", cands.account_codes)):
        known = vocab.get(name)
        if known is None:
            continue
        bad = [int(i) for i, j in zip(ids, first, strict=True) if str(column[j]) not in known]
        if bad:
            stats[f"unknown_{name}"] = int(np.count_nonzero(np.isin(cands.category_ids, bad)))
    return stats


_COUNTED = (
    *(
        (f"missing_{table}", "missing_feature_rows", table)
        for table in ("item", "emp_item", "employee", "vendor", "category")
    ),
    ("unknown_category", "unknown_categories", "category"),
    ("unknown_account_code", "unknown_categories", "account_code"),
    ("unknown_vendor_industry", "unknown_categories", "vendor_industry"),
    ("unknown_employee_department", "unknown_categories", "employee_department"),
    ("unknown_term", "unknown_categories", "description_term"),
)
"""What :func:`record` counts: (stats key, metric, label)."""


def record(metrics: RankerMetrics, outcome: RankOutcome) -> None:
    """Count defaults and unknowns of one ranking (deferred updates: :meth:`RankerMetrics.hot`)."""
    s = outcome.stats
    metrics.hot("candidates").observe(outcome.candidates)
    for key, metric, label in _COUNTED:
        if s.get(key):
            metrics.hot(metric, label).inc(s[key])
