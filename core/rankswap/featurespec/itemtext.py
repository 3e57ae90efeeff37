"""Features between the expense and each candidate item from the item's own name and code, and
from the ``term_item`` table (P(item | term) within the tenant, the last ``TERM_ITEM_DAYS``).

The name features need nothing but the product DB, so an item created a second ago has them:

* ``name_match_n``: how many terms of the item's name + code (``tokenize``: character bigrams
  for Japanese, words otherwise) the description holds;
* ``name_match_share``: that count over the name's term count;
* ``name_idf_cover``: the same share weighted by each term's rarity within the candidate list
  the expense is ranked over (``idf = log1p(n_candidates / n_candidates_with_the_term)``):
  "(社内)" vs "(社外)" weigh more than the "会議" both siblings share;
* ``vendor_name_idf_cover``: the same weighting with the vendor's name in place of the
  description (a vendor whose name names the item);
* ``emp_name_share``: the same weighting over the ``emp_term`` table: how much the employee's
  recent items' names hold the candidate's name terms (an employee moved to project
  ``PJ-0130`` files its items: a new ``PJ-0130`` item shares the project's number with them);
* ``emp_name_rest``: the same over the name terms the description does not hold (the part of
  the name the user did not type: the project, the department, the qualifier they usually
  file).

``name_alone_match``: the description's terms that this candidate's name holds and no other
candidate of its category does (the description singles the item out within its category:
``社外`` for ``会議費（社外）`` next to ``会議費（社内）``).

The ratios are rounded to 1e-4 (``_grid``, see there).

``desc_item_mean`` / ``desc_item_max``: mean / max over the description's known terms of the
item's ``term_item`` share (0 for an item without a row: the documented default), so a new
item learns from its first days of use through the daily features.

Serving (one context) memoises the context-free part (the candidates' name terms and their
rarity) on the ``Candidates`` object; training runs the same arithmetic over many contexts, so
the rows are bit-identical to serving's (a test checks it)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .inputs import Candidates, ContextBatch
from .schema import C_TEXT, F32, I64, LOW32, NUMERIC_FEATURES
from .tables import FeatureTables
from .terms import pair_key_nonneg, tokenize

F64 = npt.NDArray[np.float64]

ITEM_TEXT_FEATURES: Final[tuple[str, ...]] = NUMERIC_FEATURES[C_TEXT : C_TEXT + 9]
"""The features this module writes (a run of ``NUMERIC_FEATURES``)."""


_NUMBER = re.compile(r"\d{2,}")
NO_TERM: Final = np.int64(0xFFFFFFFF)
"""Stands for a term the feature vocabulary does not hold in a pair key (no row has it)."""


@lru_cache(maxsize=65536)
def item_terms(code: str, name: str) -> tuple[str, ...]:
    """Terms of an item: its name's (``tokenize``), its code's, then the numbers written in its
    name (``PJ-0130``: a project, which ``tokenize`` leaves out of descriptions), de-duplicated.
    Cached: a tenant's catalogue is tokenised once per process."""
    numbers = _NUMBER.findall(unicodedata.normalize("NFKC", name))[:4]
    return tuple(dict.fromkeys([*tokenize(name), *tokenize(code), *numbers]))


@dataclass(frozen=True, slots=True)
class NameTerms:
    """The candidates' terms as (row, local term id) pairs; ``vocab`` maps a term to its id."""

    vocab: dict[str, int]
    row: I64
    term: I64
    n_terms: F32
    """Terms per candidate row."""

    @staticmethod
    def of(candidates: Candidates) -> NameTerms:
        """The candidates' name terms (memoised on the ``Candidates`` object)."""
        out = candidates._memo.get("name_terms")
        if out is None:
            out = candidates._memo.setdefault("name_terms", NameTerms._build(candidates))
        return out  # type: ignore[no-any-return]

    @staticmethod
    def _build(candidates: Candidates) -> NameTerms:
        # tokenise each distinct (code, name) once, then expand to rows with numpy (training
        # passes one row per (context, candidate): many rows share an item)
        pairs = np.empty(len(candidates), dtype=object)
        pairs[:] = [
            f"{c or ''}\x00{m or ''}"
            for c, m in zip(candidates.codes.tolist(), candidates.names.tolist(), strict=True)
        ]
        if len(candidates) == 0:
            empty = np.empty(0, dtype=np.int64)
            return NameTerms(vocab={}, row=empty, term=empty, n_terms=np.zeros(0, np.float32))
        uniq, inv = np.unique(pairs, return_inverse=True)
        vocab: dict[str, int] = {}
        flat: list[int] = []
        lens = np.empty(len(uniq), dtype=np.int64)
        for k, text in enumerate(uniq.tolist()):
            code, _, name = str(text).partition("\x00")
            found = item_terms(code, name)
            lens[k] = len(found)
            flat.extend(vocab.setdefault(t, len(vocab)) for t in found)
        starts = np.cumsum(lens) - lens
        row_len = lens[inv]
        row = np.repeat(np.arange(len(candidates), dtype=np.int64), row_len)
        within = np.arange(row.shape[0]) - np.repeat(np.cumsum(row_len) - row_len, row_len)
        term = np.asarray(flat, dtype=np.int64)[np.repeat(starts[inv], row_len) + within]
        return NameTerms(vocab=vocab, row=row, term=term, n_terms=row_len.astype(np.float32))


@dataclass(frozen=True, slots=True)
class Rarity:
    """Per (row, term) pair: its key ``context * V + term``, its idf within the context's
    candidate list, and whether no other candidate of its category holds the term."""

    key: I64
    idf: F64
    alone: F64

    @staticmethod
    def build(names: NameTerms, ci: I64, cat_of_row: npt.NDArray[np.intp]) -> Rarity:
        v = max(len(names.vocab), 1)
        ctx = ci[names.row]
        key: I64 = ctx * v + names.term
        _, inv, df = np.unique(key, return_inverse=True, return_counts=True)
        per_ctx = np.bincount(ci).astype(np.float64)
        idf: F64 = np.log1p(per_ctx[ctx] / df[inv].astype(np.float64))
        n_cat = int(cat_of_row.max()) + 1 if cat_of_row.shape[0] else 1
        in_cat = (ctx * n_cat + cat_of_row[names.row].astype(np.int64)) * v + names.term
        _, inv_c, df_c = np.unique(in_cat, return_inverse=True, return_counts=True)
        alone: F64 = (df_c[inv_c] == 1).astype(np.float64)
        return Rarity(key=key, idf=idf, alone=alone)


def text_features(
    contexts: ContextBatch,
    ci: I64,
    candidates: Candidates,
    tables: FeatureTables,
    desc_term_ids: I64,
    *,
    single: bool,
    out: F32,
) -> None:
    """Write the nine features (``C_TEXT`` run of ``NUMERIC_FEATURES``) into ``out`` [N, 9].

    ``desc_term_ids`` [n_ctx, MAX_TERMS]: the contexts' description term ids in the feature
    vocabulary (-1 padded / unknown), as ``assembly`` computed them."""
    n = len(candidates)
    names = NameTerms.of(candidates)
    if single:
        rarity = candidates._memo.get("name_rarity")
        if rarity is None:
            built = Rarity.build(
                names, np.zeros(n, dtype=np.int64), candidates.distinct_categories()[1]
            )
            rarity = candidates._memo.setdefault("name_rarity", built)
    else:
        _, cat_of_row = np.unique(candidates.category_ids, return_inverse=True)
        rarity = Rarity.build(names, ci, cat_of_row)
    v = max(len(names.vocab), 1)
    desc_keys = _context_keys(contexts.descriptions, names.vocab, v)
    vendor_keys = _context_keys(contexts.vendor_names, names.vocab, v)
    matched = _isin(rarity.key, desc_keys)
    match_n = np.bincount(names.row, weights=matched, minlength=n)
    out[:, 0] = match_n
    out[:, 1] = _grid(match_n / np.maximum(names.n_terms, 1.0))
    out[:, 2] = _grid(_cover(names.row, rarity.idf, matched, n))
    out[:, 3] = _grid(_cover(names.row, rarity.idf, _isin(rarity.key, vendor_keys), n))
    emp = _emp_term_shares(contexts, ci, candidates, tables, names, single)
    out[:, 4] = _grid(_cover(names.row, rarity.idf, emp, n))
    out[:, 5] = _grid(_cover(names.row, rarity.idf * (1.0 - matched), emp, n))
    share = _term_item_shares(tables, candidates, ci, desc_term_ids, single)
    n_known = (desc_term_ids >= 0).sum(axis=1)
    known: Any = n_known[0] if single else n_known[ci]
    out[:, 6] = _grid(np.where(known > 0, share.sum(axis=1) / np.maximum(known, 1), 0.0))
    out[:, 7] = share.max(axis=1) if share.shape[1] else 0.0
    out[:, 8] = np.bincount(names.row, weights=matched * rarity.alone, minlength=n)


def _grid(values: Any) -> Any:
    """Ratios rounded to ``GRID`` (1e-4): stable values (sums of float terms otherwise differ
    in the last bits) and few distinct ones. This is not what keeps the float32 ONNX graph
    equal to the float64 model: a grid even invites the trap (a threshold halfway between the
    grid values k and k+2 is k+1 itself); the export's float32-floor thresholds
    (``rankswap_training.model.float32_floor``) do, for any value."""
    return np.round(values, 4)


def _emp_term_shares(
    contexts: ContextBatch,
    ci: I64,
    candidates: Candidates,
    tables: FeatureTables,
    names: NameTerms,
    single: bool,
) -> F64:
    """Per (row, name term) pair: the employee's ``emp_term`` share of the term (0 without a
    row: the documented default)."""
    table = tables.tables["emp_term"]
    if names.term.shape[0] == 0 or len(table) == 0:
        return np.zeros(names.term.shape[0], dtype=np.float64)
    low = _feature_term_ids(names, tables, single, candidates)[names.term]
    if single:
        pos, found = table.lookup_pairs(int(contexts.employee_ids[0]), low)
    else:
        pos, found = table.lookup(pair_key_nonneg(contexts.employee_ids[ci[names.row]], low))
    out: F64 = np.where(found, table.columns["share"][pos], np.float32(0.0)).astype(np.float64)
    return out


def _feature_term_ids(
    names: NameTerms, tables: FeatureTables, single: bool, candidates: Candidates
) -> I64:
    """Feature-vocabulary id of each of the candidates' local terms (``NO_TERM`` if absent);
    memoised per tables object for one context (the last two, as ``assembly.context_free``)."""
    token = tables.token()
    memo: dict[Any, I64] | None = candidates._memo.get("name_fids") if single else None
    if memo is not None and token in memo:
        return memo[token]
    index = tables.term_index()
    fids = np.array([index.get(t, -1) for t in names.vocab], dtype=np.int64)
    fids[fids < 0] = NO_TERM
    if single:
        memo = candidates._memo.setdefault("name_fids", {})
        memo[token] = fids
        while len(memo) > 2:
            try:
                memo.pop(next(iter(memo)), None)
            except (RuntimeError, StopIteration):  # another thread changed it; fine
                break
    return fids


def _context_keys(texts: Any, vocab: dict[str, int], v: int) -> I64:
    """Sorted keys ``context * V + term`` of each context's terms that some candidate holds."""
    keys = [
        k * v + vocab[t]
        for k, text in enumerate(texts.tolist())
        for t in tokenize(str(text))
        if t in vocab
    ]
    return np.unique(np.asarray(keys, dtype=np.int64))


def _isin(keys: I64, sorted_keys: I64) -> F64:
    if sorted_keys.shape[0] == 0 or keys.shape[0] == 0:
        return np.zeros(keys.shape[0], dtype=np.float64)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.shape[0] - 1)
    out: F64 = (sorted_keys[pos] == keys).astype(np.float64)
    return out


def _cover(row: I64, weight: F64, value: F64, n: int) -> F64:
    """Per row: the ``weight``-weighted mean of ``value`` over its pairs (0 without weight)."""
    got = np.bincount(row, weights=weight * value, minlength=n)
    total = np.bincount(row, weights=weight, minlength=n)
    out: F64 = np.where(total > 0, got / np.maximum(total, 1e-12), 0.0)
    return out


def _term_item_shares(
    tables: FeatureTables, candidates: Candidates, ci: I64, term_ids: I64, single: bool
) -> F32:
    """[N, MAX_TERMS]: the ``term_item`` share of (description term j, candidate), 0 without a
    row. One context: each known term's key range is read (a few rows each) and scattered to
    the candidates holding those items; many contexts: one lookup of every (row, term) key."""
    table = tables.tables["term_item"]
    n, width = len(candidates), term_ids.shape[1]
    items = candidates.item_ids
    if not single:
        keys = pair_key_nonneg(term_ids[ci], items[:, None])
        pos, found = table.lookup(keys)
        share = table.columns["share"]
        if share.shape[0] == 0:
            return np.zeros((n, width), dtype=np.float32)
        out: F32 = np.where(found, share[pos], np.float32(0.0)).astype(np.float32)
        return out
    out = np.zeros((n, width), dtype=np.float32)
    keys_all = table.keys
    if keys_all.shape[0] == 0 or n == 0:
        return out
    order = candidates._memo.get("id_order")
    if order is None:
        order = candidates._memo.setdefault("id_order", np.argsort(items, kind="stable"))
    sorted_ids = items[order]
    share = table.columns["share"]
    for j, t in enumerate(term_ids[0].tolist()):
        if t < 0:
            continue
        base = np.int64(t) << 32
        lo = int(np.searchsorted(keys_all, base))
        hi = int(np.searchsorted(keys_all, base | LOW32, side="right"))
        if hi == lo:
            continue
        hit_items = keys_all[lo:hi] & LOW32
        p = np.minimum(np.searchsorted(sorted_ids, hit_items), n - 1)
        ok = sorted_ids[p] == hit_items
        if bool(ok.any()):
            out[order[p[ok]], j] = share[lo:hi][ok]
    return out
