"""Offline evaluation: ranking metrics for the model and the baselines on a time-split hold-out.

Each hold-out expense is one query whose candidates are all the tenant's items that existed
when it was filed; exactly one is relevant (the item chosen). Metrics (mean over queries):
NDCG@5, Recall@1, Recall@5, MRR. Ties are broken at random (fixed seed), so a baseline that
scores many candidates equally is neither helped nor hurt by the order of the candidate list.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from rankswap import featurespec as fs
from rankswap_training.dataset import PairSet
from rankswap_training.features import History

METRICS = ("ndcg@5", "recall@1", "recall@5", "mrr")
F64 = npt.NDArray[np.float64]


def positive_ranks(scores: npt.ArrayLike, pairs: PairSet, seed: int = 0) -> npt.NDArray[np.int64]:
    """1-based rank of the relevant item in each group (random tie-breaking)."""
    s = np.asarray(scores, dtype=np.float64)
    jitter = np.random.default_rng(seed).random(len(s)) * 1e-9 * (np.abs(s).max() + 1.0)
    s = s + jitter
    g = pairs.group
    n_groups = pairs.n_groups
    pos_score = np.full(n_groups, -np.inf)
    is_pos = pairs.label > 0
    pos_score[g[is_pos]] = s[is_pos]
    higher = np.bincount(g, weights=(s > pos_score[g]).astype(np.float64), minlength=n_groups)
    return (higher + 1).astype(np.int64)


def metrics_from_ranks(ranks: npt.NDArray[np.int64]) -> dict[str, float]:
    if len(ranks) == 0:
        return {m: float("nan") for m in METRICS} | {"queries": 0}
    r = ranks.astype(np.float64)
    return {
        "ndcg@5": float(np.mean(np.where(r <= 5, 1.0 / np.log2(r + 1.0), 0.0))),
        "recall@1": float(np.mean(r <= 1)),
        "recall@5": float(np.mean(r <= 5)),
        "mrr": float(np.mean(1.0 / r)),
        "queries": len(ranks),
    }


SERVING_SUBSETS = frozenset({"new_sibling", "new_sibling_named"})
"""Subsets ranked among the candidates active today (what serving ranks): the DB keeps no
deactivation history, so a hold-out list also holds items deactivated since, among them the
original of a split item, which would otherwise compete with its own successors."""


def evaluate_scores(
    scores: npt.ArrayLike,
    pairs: PairSet,
    subsets: dict[str, npt.NDArray[np.bool_]],
    active: npt.NDArray[np.bool_] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics per subset of groups (``subsets[name]`` is a boolean mask over groups); the
    ``SERVING_SUBSETS`` among the rows of ``active`` candidates only, when given."""
    ranks = positive_ranks(scores, pairs)
    out = {}
    served = ranks
    if active is not None and any(name in SERVING_SUBSETS for name in subsets):
        s = np.asarray(scores, dtype=np.float64)
        floor = (s.min() - 1.0) if len(s) else 0.0
        served = positive_ranks(np.where(active | (pairs.label > 0), s, floor), pairs)
    for name, mask in subsets.items():
        out[name] = metrics_from_ranks((served if name in SERVING_SUBSETS else ranks)[mask])
    return out


# ------------------------------------------------------------------------------ baselines


def _col(pairs: PairSet, name: str) -> npt.NDArray[np.float32]:
    return pairs.num[:, fs.NUMERIC_FEATURES.index(name)]


def popularity_scores(pairs: PairSet) -> F64:
    """Tenant popularity: the item's uses in the last 90 days (then 365 days)."""
    return _col(pairs, "item_cnt_90d") + 1e-3 * _col(pairs, "item_cnt_365d").astype(np.float64)


def recent_item_scores(pairs: PairSet) -> F64:
    """The employee's most recent items first (recency rank), then tenant popularity."""
    rank = _col(pairs, "emp_item_recency_rank").astype(np.float64)
    return -rank + 1e-6 * popularity_scores(pairs)


class MulticlassBaseline:
    """The approach the seed rejected: per tenant, a classifier over the item ids seen in
    training (multinomial naive Bayes on description terms, vendor, industry, department,
    employee and amount bucket). It cannot rank an item it has never seen."""

    def __init__(self) -> None:
        self.models: dict[str, Any] = {}

    @staticmethod
    def _docs(history: History, rows: npt.NDArray[np.int64]) -> list[list[str]]:
        e = history.expenses
        desc = e["description"].to_numpy(dtype=object)[rows]
        ven = e["vendor_id"].to_numpy()[rows]
        emp = e["employee_id"].to_numpy()[rows]
        ind = e["industry"].to_numpy(dtype=object)[rows]
        dep = e["department"].to_numpy(dtype=object)[rows]
        amt = np.floor(np.log2(np.maximum(e["amount"].to_numpy()[rows], 1.0))).astype(int)
        return [
            [*fs.tokenize(str(d)), f"v:{v}", f"e:{m}", f"i:{i}", f"d:{p}", f"a:{a}"]
            for d, v, m, i, p, a in zip(desc, ven, emp, ind, dep, amt, strict=True)
        ]

    def fit(self, history: History, rows: npt.NDArray[np.int64]) -> MulticlassBaseline:
        from sklearn.feature_extraction import FeatureHasher
        from sklearn.naive_bayes import MultinomialNB

        e = history.expenses
        tenants = e["tenant_id"].to_numpy(dtype=object)[rows]
        items = e["item_id"].to_numpy(dtype=np.int64)[rows]
        # small hashing space: NB keeps a dense [classes x features] table per tenant
        hasher = FeatureHasher(n_features=2**12, input_type="string", alternate_sign=False)
        for t in np.unique(tenants):
            sel = rows[tenants == t]
            x = hasher.transform(self._docs(history, sel))
            self.models[str(t)] = (hasher, MultinomialNB(alpha=0.1).fit(x, items[tenants == t]))
        return self

    def scores(self, history: History, pairs: PairSet) -> F64:
        out = np.full(len(pairs), -1e9)
        tenants = history.expenses["tenant_id"].to_numpy(dtype=object)[pairs.exp_rows]
        for t in np.unique(tenants):
            if str(t) not in self.models:
                continue
            hasher, nb = self.models[str(t)]
            groups = np.flatnonzero(tenants == t)
            logp = nb.predict_log_proba(
                hasher.transform(self._docs(history, pairs.exp_rows[groups]))
            )
            classes = nb.classes_.astype(np.int64)
            row_mask = np.isin(pairs.group, groups)
            rows = np.flatnonzero(row_mask)
            local = np.searchsorted(groups, pairs.group[rows])
            cls = np.searchsorted(classes, pairs.item_ids[rows])
            cls_c = np.minimum(cls, len(classes) - 1)
            known = classes[cls_c] == pairs.item_ids[rows]
            out[rows] = np.where(known, logp[local, cls_c], -1e9)
        return out


def results_table(results: dict[str, dict[str, dict[str, float]]]) -> pd.DataFrame:
    """Long table: one row per (model, subset)."""
    rows = []
    for model, by_subset in results.items():
        for subset, m in by_subset.items():
            rows.append({"model": model, "subset": subset, **m})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ subsets


def active_rows(history: History, pairs: PairSet) -> npt.NDArray[np.bool_]:
    """Per row: the candidate is active in the product DB today."""
    it = history.items
    ids = it["id"].to_numpy(dtype=np.int64)
    order = np.argsort(ids)
    where = order[np.searchsorted(ids, pairs.item_ids, sorter=order)]
    out: npt.NDArray[np.bool_] = it["active"].to_numpy(dtype=bool)[where]
    return out


def sibling_subsets(
    history: History, pairs: PairSet, cold: npt.NDArray[np.bool_]
) -> dict[str, npt.NDArray[np.bool_]]:
    """``new_sibling``: cold-start queries whose item's category holds another active item among
    the candidates (two new split items of one category are each other's siblings);
    ``new_sibling_named``: those whose description holds a term of the item's name and code
    that no sibling's name or code holds (the description names the variant)."""
    it = history.items
    ids = it["id"].to_numpy(dtype=np.int64)
    order = np.argsort(ids)
    where = order[np.searchsorted(ids, pairs.item_ids, sorter=order)]
    cat = it["category_id"].to_numpy(dtype=np.int64)[where]
    active = it["active"].to_numpy(dtype=bool)[where]
    is_pos = pairs.label > 0
    true_row = np.full(pairs.n_groups, -1, dtype=np.int64)
    true_row[pairs.group[is_pos]] = np.flatnonzero(is_pos)
    true_cat = cat[true_row]
    sib = (cat == true_cat[pairs.group]) & active & ~is_pos
    has_sib = np.bincount(pairs.group, weights=sib, minlength=pairs.n_groups) > 0
    new_sibling = cold & has_sib
    named = np.zeros(pairs.n_groups, dtype=bool)
    codes = it["code"].to_numpy(dtype=object)
    names = it["name"].to_numpy(dtype=object)
    desc = history.expenses["description"].to_numpy(dtype=object)
    for g in np.flatnonzero(new_sibling).tolist():
        r = int(true_row[g])
        own = set(fs.item_terms(str(codes[where[r]]), str(names[where[r]])))
        for s in np.flatnonzero(sib & (pairs.group == g)).tolist():
            own -= set(fs.item_terms(str(codes[where[s]]), str(names[where[s]])))
        named[g] = bool(own & set(fs.tokenize(str(desc[pairs.exp_rows[g]]))))
    return {"new_sibling": new_sibling, "new_sibling_named": named}
