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

Serving (one context, :func:`one_context`) memoises the context-free part on the
``Candidates`` object (:class:`NameIndex`: the candidates' name terms, their rarity, an inverted
index term -> (row, term) pairs, the rows' idf totals; per feature tables, the name terms'
feature-vocabulary ids) and then touches only the pairs whose term the description, the vendor
name or the employee's ``emp_term`` rows hold: each description term and ``emp_term`` row is
looked up once per request, not once per candidate; the vendor name's part
(:class:`VendorNames`) and the employee's (:class:`EmployeeNames`) are memoised too. Training (:func:`_many_contexts`) runs the
dense arithmetic over every pair of many contexts. Both add the same non-zero terms in the same
order (pair order), so the rows are bit-identical (tests check it on handmade and generated
worlds)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .inputs import Candidates, ContextBatch
from .schema import C_TEXT, F32, I64, LOW32, MAX_TERMS, NUMERIC_FEATURES
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


@dataclass(frozen=True, slots=True)
class NameIndex:
    """The context-free part of the text features for one candidate list (one context): the
    name terms, their rarity within the list (``idf``, ``alone`` per (row, term) pair), the
    pairs by term (``by_term[term_start[t]:term_start[t + 1]]``: the pairs of local term ``t``,
    ascending) and by row (``row_start``), per row the idf total (the covers' denominator) and
    ``max(term count, 1)``."""

    names: NameTerms
    idf: F64
    alone: F64
    term_start: I64
    by_term: I64
    row_start: I64
    idf_total: F64
    has_idf: npt.NDArray[np.bool_]
    """[N, 1]: ``idf_total > 0``."""
    idf_den: F64
    """[N, 1]: ``max(idf_total, 1e-12)``."""
    terms_den: F32
    """``max(term count, 1)``."""

    @staticmethod
    def of(candidates: Candidates) -> NameIndex:
        """Memoised on the ``Candidates`` object (the product DB's cached list serves many
        requests)."""
        out = candidates._memo.get("name_index")
        if out is None:
            out = candidates._memo.setdefault("name_index", NameIndex._build(candidates))
        return out  # type: ignore[no-any-return]

    @staticmethod
    def _build(candidates: Candidates) -> NameIndex:
        n = len(candidates)
        names = NameTerms.of(candidates)
        rarity = Rarity.build(
            names, np.zeros(n, dtype=np.int64), candidates.distinct_categories()[1]
        )
        v = len(names.vocab)
        term_start = np.zeros(v + 1, dtype=np.int64)
        np.cumsum(np.bincount(names.term, minlength=v), out=term_start[1:])
        row_start = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(names.row, minlength=n), out=row_start[1:])
        total: F64 = np.bincount(names.row, weights=rarity.idf, minlength=n).astype(np.float64)
        out = NameIndex(
            names=names,
            idf=rarity.idf,
            alone=rarity.alone,
            term_start=term_start,
            by_term=np.argsort(names.term, kind="stable").astype(np.int64),
            row_start=row_start,
            idf_total=total,
            has_idf=(total > 0)[:, None],
            idf_den=np.maximum(total, 1e-12)[:, None],
            terms_den=np.maximum(names.n_terms, 1.0),
        )
        for value in (getattr(out, name) for name in out.__slots__):
            if isinstance(value, np.ndarray):
                value.flags.writeable = False  # shared by every request
        return out

    def cover(self, rows: Any, sums: npt.NDArray[Any]) -> F64:
        """Covers of ``rows`` (an index or ``slice(None)``) from their weighted idf sums:
        ``sums / max(idf total, 1e-12)``, 0 where the row's idf total is 0."""
        out: F64 = sums / self.idf_den[rows, 0]
        out[~self.has_idf[rows, 0]] = 0.0
        return out

    def pairs_of(self, local_terms: I64) -> I64:
        """The pair indices holding any of ``local_terms`` (distinct), ascending: pair order
        (row by row, each row's terms in name order), the order the dense path sums in."""
        if local_terms.shape[0] == 0:
            return np.empty(0, dtype=np.int64)
        if local_terms.shape[0] == 1:
            t = int(local_terms[0])
            return self.by_term[self.term_start[t] : self.term_start[t + 1]]
        idx = _ranges(self.term_start[local_terms], self.term_start[local_terms + 1])
        pairs: I64 = np.sort(self.by_term[idx])
        return pairs


def text_features(
    contexts: ContextBatch,
    ci: I64,
    candidates: Candidates,
    tables: FeatureTables,
    desc_terms: list[list[str]],
    desc_term_ids: I64,
    *,
    out: F32,
) -> None:
    """Write the nine features (``C_TEXT`` run of ``NUMERIC_FEATURES``) into ``out`` [N, 9]
    for rows of many contexts (training; serving calls :func:`one_context`).

    ``desc_terms``: each context's description terms (``tokenize``, computed once by
    ``assembly``); ``desc_term_ids`` [n_ctx, MAX_TERMS]: the same terms' ids in the feature
    vocabulary (-1 padded / unknown)."""
    _many_contexts(contexts, ci, candidates, tables, desc_terms, desc_term_ids, out)


def one_context(
    employee: int,
    vendor_name: str,
    candidates: Candidates,
    tables: FeatureTables,
    desc_terms: list[str],
    term_item: tuple[I64, I64, F32],
    n_known: int,
    out: F32,
) -> None:
    """Serving: the features of one context (``employee``: -1 when unknown) from the memoised
    :class:`NameIndex`, into ``out`` [N, 9]. ``term_item``: the non-zero entries of the
    context's [N, MAX_TERMS] ``term_item`` block as (candidate row, term column, share);
    ``n_known``: how many of the description's terms the feature vocabulary holds.

    With one context, whether a pair is matched / vendor-named depends on its term only, so
    only the pairs of the description's and the vendor name's terms are summed; the employee's
    ``emp_term`` rows (one key range) are spread over every pair. The dense path sums the same
    products in the same (pair) order, leaving out only zeros, so the values are identical:
    ``emp_name_rest`` equals ``emp_name_share``'s sums on rows without a matched pair and is
    summed again, over all their pairs, on the few rows with one."""
    index = NameIndex.of(candidates)
    names, idf = index.names, index.idf
    vocab = names.vocab
    out[:] = 0.0  # rows without a matched term, vendor-named term or term_item row
    desc = _local_terms(desc_terms, vocab)
    matched = index.pairs_of(desc)
    rows = np.empty(0, dtype=np.int64)
    if matched.shape[0]:
        rows, inv = _distinct_sorted(names.row[matched])
        match_n = np.bincount(inv).astype(np.float64)
        out[rows, 0] = match_n
        out[rows, 1] = _grid(match_n / index.terms_den[rows])
        out[rows, 2] = _grid(index.cover(rows, np.bincount(inv, weights=idf[matched])))
        out[rows, 8] = np.bincount(inv, weights=index.alone[matched])
    vendor = VendorNames.of(vendor_name, index, candidates)
    if vendor is not None:
        out[vendor.rows, 3] = vendor.cover
    emp = EmployeeNames.of(employee, tables, index, candidates)
    if emp is not None:
        n = len(candidates)
        # emp_name_share; emp_name_rest is the same on rows without a matched pair
        out[:, 4] = emp.share_column
        out[:, 5] = emp.share_column
        if rows.shape[0]:
            # rows with a matched pair: idf * (1 - matched) (idf or 0.0) over all their pairs
            q = _ranges(index.row_start[rows], index.row_start[rows + 1])
            keep = np.ones(len(vocab), dtype=np.float64)
            keep[desc] = 0.0
            per_term = np.zeros(len(vocab), dtype=np.float64)
            per_term[emp.local] = emp.share
            t_q = names.term[q]
            k, rq, idf_q = keep[t_q], names.row[q], idf[q]
            rest = np.bincount(rq, weights=idf_q * per_term[t_q] * k, minlength=n)[rows]
            den = np.bincount(rq, weights=idf_q * k, minlength=n)[rows]
            out[rows, 5] = _grid(np.where(den > 0, rest / np.maximum(den, 1e-12), 0.0))
    hit_rows, hit_cols, hit_share = term_item
    if hit_rows.shape[0]:
        # the [rows, MAX_TERMS] block of the rows with a term_item row: the same row sums
        t_rows, t_inv = _distinct(hit_rows, len(candidates))
        share = np.zeros((t_rows.shape[0], MAX_TERMS), dtype=np.float32)
        share[t_inv, hit_cols] = hit_share
        # divided by an int64 (not a Python int, which would keep the float32 sum in float32)
        out[t_rows, 6] = _grid(share.sum(axis=1) / np.int64(n_known))
        out[t_rows, 7] = share.max(axis=1)


def _many_contexts(
    contexts: ContextBatch,
    ci: I64,
    candidates: Candidates,
    tables: FeatureTables,
    desc_terms: list[list[str]],
    desc_term_ids: I64,
    out: F32,
) -> None:
    """Training: every (row, name term) pair of many contexts at once."""
    n = len(candidates)
    names = NameTerms.of(candidates)
    _, cat_of_row = np.unique(candidates.category_ids, return_inverse=True)
    rarity = Rarity.build(names, ci, cat_of_row)
    v = max(len(names.vocab), 1)
    desc_keys = _context_keys(desc_terms, names.vocab, v)
    vendor_keys = _context_keys(
        [tokenize(str(t)) for t in contexts.vendor_names.tolist()], names.vocab, v
    )
    matched = _isin(rarity.key, desc_keys)
    match_n = np.bincount(names.row, weights=matched, minlength=n)
    out[:, 0] = match_n
    out[:, 1] = _grid(match_n / np.maximum(names.n_terms, 1.0))
    out[:, 2] = _grid(_cover(names.row, rarity.idf, matched, n))
    out[:, 3] = _grid(_cover(names.row, rarity.idf, _isin(rarity.key, vendor_keys), n))
    emp = _emp_term_shares(contexts, ci, tables, names)
    out[:, 4] = _grid(_cover(names.row, rarity.idf, emp, n))
    out[:, 5] = _grid(_cover(names.row, rarity.idf * (1.0 - matched), emp, n))
    share = _term_item_shares(tables, candidates, ci, desc_term_ids)
    n_known = (desc_term_ids >= 0).sum(axis=1)[ci]
    out[:, 6] = _grid(np.where(n_known > 0, share.sum(axis=1) / np.maximum(n_known, 1), 0.0))
    out[:, 7] = share.max(axis=1) if share.shape[1] else 0.0
    out[:, 8] = np.bincount(names.row, weights=matched * rarity.alone, minlength=n)


def _grid(values: Any) -> Any:
    """Ratios rounded to ``GRID`` (1e-4): stable values (sums of float terms otherwise differ
    in the last bits) and few distinct ones. This is not what keeps the float32 ONNX graph
    equal to the float64 model: a grid even invites the trap (a threshold halfway between the
    grid values k and k+2 is k+1 itself); the export's float32-floor thresholds
    (``rankswap_training.model.float32_floor``) do, for any value."""
    return values.round(4)  # np.round's own method, without the wrapper's dispatch


def _emp_term_shares(
    contexts: ContextBatch, ci: I64, tables: FeatureTables, names: NameTerms
) -> F64:
    """Per (row, name term) pair: the employee's ``emp_term`` share of the term (0 without a
    row: the documented default)."""
    table = tables.tables["emp_term"]
    if names.term.shape[0] == 0 or len(table) == 0:
        return np.zeros(names.term.shape[0], dtype=np.float64)
    index = tables.term_index()
    fids = np.array([index.get(t, -1) for t in names.vocab], dtype=np.int64)
    fids[fids < 0] = NO_TERM
    pos, found = table.lookup(
        pair_key_nonneg(contexts.employee_ids[ci[names.row]], fids[names.term])
    )
    out: F64 = np.where(found, table.columns["share"][pos], np.float32(0.0)).astype(np.float64)
    return out


EMPLOYEE_KEEP: Final = 128
"""Employees whose ``emp_term`` part of the serving text features (:class:`EmployeeNames`) is
kept per candidate list (and feature tables), least recently used dropped first: about
``4 * len(candidates) + 16 * (the employee's name terms)`` bytes each, so ~0.4 MB for a list
of 770 candidates."""


@dataclass(frozen=True, slots=True)
class EmployeeNames:
    """The employee's ``emp_term`` rows that are name terms of the candidates (local term ids,
    float64 shares) and the ``emp_name_share`` feature they give every candidate (float32; also
    ``emp_name_rest`` on the rows without a matched description term)."""

    local: I64
    share: F64
    share_column: F32

    @staticmethod
    def of(
        employee: int, tables: FeatureTables, index: NameIndex, candidates: Candidates
    ) -> EmployeeNames | None:
        """Memoised per (tables, employee) on ``candidates`` (``EMPLOYEE_KEEP`` kept); ``None``
        when the employee has no such row (the features are 0)."""
        memo = candidates.lru("employee_names", EMPLOYEE_KEEP)
        key = (tables.token(), employee)
        hit, found = memo.get(key)
        if found:
            return hit  # type: ignore[no-any-return]
        out = EmployeeNames._build(employee, tables, index, candidates)
        memo.put(key, out)
        return out

    @staticmethod
    def _build(
        employee: int, tables: FeatureTables, index: NameIndex, candidates: Candidates
    ) -> EmployeeNames | None:
        names = index.names
        local, share = _employee_terms(employee, tables, names, candidates)
        if local.shape[0] == 0:
            return None
        per_term = np.zeros(len(names.vocab), dtype=np.float64)
        per_term[local] = share
        got = np.bincount(
            names.row, weights=index.idf * per_term[names.term], minlength=len(candidates)
        )
        column = _grid(index.cover(slice(None), got)).astype(np.float32)
        for value in (local, share, column):
            value.flags.writeable = False  # shared by every request
        return EmployeeNames(local=local, share=share, share_column=column)


VENDOR_KEEP: Final = 256
"""Vendor names whose ``vendor_name_idf_cover`` (:class:`VendorNames`) is kept per candidate
list, least recently used dropped first: a few bytes per candidate the name covers."""


@dataclass(frozen=True, slots=True)
class VendorNames:
    """The candidate rows a vendor's name holds name terms of, and their
    ``vendor_name_idf_cover`` (float32): a function of the candidate list and the name alone."""

    rows: I64
    cover: F32

    @staticmethod
    def of(vendor_name: str, index: NameIndex, candidates: Candidates) -> VendorNames | None:
        """Memoised per name on ``candidates`` (``VENDOR_KEEP`` kept); ``None`` when the name
        holds none of the candidates' name terms (the feature is 0)."""
        memo = candidates.lru("vendor_names", VENDOR_KEEP)
        hit, found = memo.get(vendor_name)
        if found:
            return hit  # type: ignore[no-any-return]
        out = None
        pairs = index.pairs_of(_local_terms(tokenize(vendor_name), index.names.vocab))
        if pairs.shape[0]:
            rows, inv = _distinct_sorted(index.names.row[pairs])
            sums = np.bincount(inv, weights=index.idf[pairs])
            cover = _grid(index.cover(rows, sums)).astype(np.float32)
            for value in (rows, cover):
                value.flags.writeable = False  # shared by every request
            out = VendorNames(rows=rows, cover=cover)
        memo.put(vendor_name, out)
        return out


def _employee_terms(
    employee: int, tables: FeatureTables, names: NameTerms, candidates: Candidates
) -> tuple[I64, F64]:
    """The employee's ``emp_term`` rows that are name terms of the candidates: (local term ids,
    shares as float64), from the employee's key range (two scalar searches) mapped through the
    name terms' sorted feature ids (:func:`_feature_ids`)."""
    table = tables.tables["emp_term"]
    none = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    if employee < 0 or len(table) == 0 or not names.vocab:
        return none
    base = np.int64(employee) << 32
    lo = int(np.searchsorted(table.keys, base))
    hi = int(np.searchsorted(table.keys, base | LOW32, side="right"))
    if hi == lo:
        return none
    sorted_fids, local = _feature_ids(names, tables, candidates)
    if sorted_fids.shape[0] == 0:
        return none
    fids = table.keys[lo:hi] & LOW32
    p = np.minimum(np.searchsorted(sorted_fids, fids), sorted_fids.shape[0] - 1)
    ok = sorted_fids[p] == fids
    share = table.columns["share"][lo:hi][ok].astype(np.float64)
    return local[p[ok]], share


def _feature_ids(
    names: NameTerms, tables: FeatureTables, candidates: Candidates
) -> tuple[I64, I64]:
    """The candidates' name terms that the feature vocabulary holds: their feature ids, sorted,
    and the local term id of each; memoised per tables object (the last two, as
    ``serving.ServingBase``)."""
    token = tables.token()
    memo: dict[Any, tuple[I64, I64]] | None = candidates._memo.get("name_fids")
    if memo is None:
        memo = candidates._memo.setdefault("name_fids", {})
    hit = memo.get(token)
    if hit is not None:
        return hit
    index = tables.term_index()
    fids = np.array([index.get(t, -1) for t in names.vocab], dtype=np.int64)
    known = np.flatnonzero(fids >= 0)
    order = np.argsort(fids[known])
    out = (fids[known][order], known[order].astype(np.int64))
    memo[token] = out
    while len(memo) > 2:
        try:
            memo.pop(next(iter(memo)), None)
        except (RuntimeError, StopIteration):  # another thread changed it; fine
            break
    return out


def _local_terms(terms: list[str], vocab: dict[str, int]) -> I64:
    """The local ids of ``terms`` (distinct: ``tokenize`` de-duplicates) the candidates hold."""
    return np.array([vocab[t] for t in terms if t in vocab], dtype=np.int64)


def _context_keys(terms: list[list[str]], vocab: dict[str, int], v: int) -> I64:
    """Sorted keys ``context * V + term`` of each context's terms that some candidate holds."""
    keys = [k * v + vocab[t] for k, found in enumerate(terms) for t in found if t in vocab]
    return np.unique(np.asarray(keys, dtype=np.int64))


def _distinct(rows: I64, n: int) -> tuple[I64, I64]:
    """``np.unique(rows, return_inverse=True)`` for row numbers in ``[0, n)``, with a few O(n)
    calls instead of a sort (the rows of one request's matched pairs, a few of n)."""
    slot = np.zeros(n, dtype=np.int64)
    slot[rows] = 1
    distinct = np.flatnonzero(slot)
    slot[distinct] = np.arange(distinct.shape[0])
    inv: I64 = slot[rows]
    return distinct, inv


def _distinct_sorted(rows: I64) -> tuple[I64, I64]:
    """``np.unique(rows, return_inverse=True)`` for ascending ``rows`` (the rows of pairs in
    pair order): where the row changes, without a sort or an array of every row."""
    if rows.shape[0] == 1:
        return rows, np.zeros(1, dtype=np.int64)
    new = np.empty(rows.shape[0], dtype=bool)
    new[0] = True
    np.not_equal(rows[1:], rows[:-1], out=new[1:])
    inv: I64 = np.cumsum(new) - 1
    distinct: I64 = rows[new]
    return distinct, inv


def _ranges(starts: I64, ends: I64) -> I64:
    """The concatenation of ``arange(starts[i], ends[i])``."""
    lens = ends - starts
    total = int(lens.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    offsets = np.repeat(starts - (np.cumsum(lens) - lens), lens)
    out: I64 = np.arange(total, dtype=np.int64) + offsets
    return out


def _isin_sorted(keys: I64, sorted_keys: I64) -> npt.NDArray[np.bool_]:
    if sorted_keys.shape[0] == 0 or keys.shape[0] == 0:
        return np.zeros(keys.shape[0], dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.shape[0] - 1)
    out: npt.NDArray[np.bool_] = sorted_keys[pos] == keys
    return out


def _isin(keys: I64, sorted_keys: I64) -> F64:
    out: F64 = _isin_sorted(keys, sorted_keys).astype(np.float64)
    return out


def _cover(row: I64, weight: F64, value: F64, n: int) -> F64:
    """Per row: the ``weight``-weighted mean of ``value`` over its pairs (0 without weight)."""
    got = np.bincount(row, weights=weight * value, minlength=n)
    total = np.bincount(row, weights=weight, minlength=n)
    out: F64 = np.where(total > 0, got / np.maximum(total, 1e-12), 0.0)
    return out


def _term_item_shares(tables: FeatureTables, candidates: Candidates, ci: I64, term_ids: I64) -> F32:
    """[N, MAX_TERMS]: the ``term_item`` share of (description term j, candidate), 0 without a
    row: one lookup of every (row, term) key."""
    table = tables.tables["term_item"]
    n, width = len(candidates), term_ids.shape[1]
    share = table.columns["share"]
    if share.shape[0] == 0:
        return np.zeros((n, width), dtype=np.float32)
    pos, found = table.lookup(pair_key_nonneg(term_ids[ci], candidates.item_ids[:, None]))
    out: F32 = np.where(found, share[pos], np.float32(0.0)).astype(np.float32)
    return out
