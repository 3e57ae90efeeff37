"""Training / evaluation pairs (expense context, candidate item) with point-in-time features.

* Candidates of an expense = the tenant's items created before the expense was filed
  (``items.created_at <= expenses.created_at``), all of them for evaluation, the positive plus
  sampled negatives (uniform + same category) for training.
* Features of an expense dated D come from the latest snapshot with as-of date <= D; a
  snapshot as of S aggregates expenses dated strictly before S, so nothing on or after the
  expense date leaks into its features.
* Rows are assembled with ``featurespec.assemble_batch``: the serving code path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

from rankswap import featurespec as fs
from rankswap_training.features import History

log = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class PairSet:
    """Rows grouped by expense (contiguous groups, in the order of ``exp_rows``)."""

    num: npt.NDArray[np.float32]
    cat: npt.NDArray[np.object_]
    label: npt.NDArray[np.float32]
    group: I64  # group (expense) index per row, 0..G-1, non-decreasing
    item_ids: I64
    exp_rows: I64  # per group: row in history.expenses
    snapshot: list[date]  # per group: as-of date of the features used

    @property
    def n_groups(self) -> int:
        return int(self.exp_rows.shape[0])

    def group_sizes(self) -> I64:
        return np.bincount(self.group, minlength=self.n_groups).astype(np.int64)

    def __len__(self) -> int:
        return int(self.label.shape[0])


def history_candidates(history: History) -> fs.Candidates:
    """Every item of the history as one ``Candidates`` (row = position in ``history.items``)."""
    it = history.items
    return fs.Candidates(
        item_ids=it["id"].to_numpy(dtype=np.int64),
        codes=it["code"].to_numpy(dtype=object),
        names=it["name"].to_numpy(dtype=object),
        category_ids=it["category_id"].to_numpy(dtype=np.int64),
        categories=it["category"].to_numpy(dtype=object),
        account_codes=it["account_code"].to_numpy(dtype=object),
        created_at=it["created_s"].to_numpy(dtype=np.int64).astype("datetime64[s]"),
    )


def context_batch(history: History, rows: I64) -> fs.ContextBatch:
    e = history.expenses
    return fs.ContextBatch(
        employee_ids=e["employee_id"].to_numpy(dtype=np.int64)[rows],
        vendor_ids=e["vendor_id"].to_numpy(dtype=np.int64)[rows],
        descriptions=e["description"].to_numpy(dtype=object)[rows],
        amounts=e["amount"].to_numpy(dtype=np.float64)[rows],
        expense_days=e["day"].to_numpy(dtype=np.int64)[rows],
        departments=e["department"].to_numpy(dtype=object)[rows],
        industries=e["industry"].to_numpy(dtype=object)[rows],
        vendor_names=e["vendor_name"].to_numpy(dtype=object)[rows],
    )


def candidate_rows(
    history: History,
    exp_rows: I64,
    *,
    negatives: int | None,
    rng: np.random.Generator,
    full_below: int = 60,
) -> tuple[I64, I64, I64]:
    """(group index, item row in history.items, catalogue size) for each pair.

    ``negatives=None``: every item that existed when the expense was filed. Otherwise, tenants
    with fewer than ``full_below`` items get full lists, larger ones ``negatives`` uniform
    draws plus ``negatives // 2`` draws from the positive's category. The positive is always
    included; expenses whose item did not exist when filed (bad data) are dropped."""
    e = history.expenses
    items = history.items
    item_tenant = items["tenant_id"].to_numpy(dtype=object)
    item_created = items["created_s"].to_numpy(dtype=np.int64)
    item_cat = items["category_id"].to_numpy(dtype=np.int64)
    item_ids = items["id"].to_numpy(dtype=np.int64)
    exp_tenant = e["tenant_id"].to_numpy(dtype=object)[exp_rows]
    exp_created = e["created_s"].to_numpy(dtype=np.int64)[exp_rows]
    exp_item = e["item_id"].to_numpy(dtype=np.int64)[exp_rows]
    id_order = np.argsort(item_ids)
    pos_row = id_order[np.searchsorted(item_ids, exp_item, sorter=id_order)]

    out_g: list[I64] = []
    out_i: list[I64] = []
    out_n: list[I64] = []
    for tenant in np.unique(exp_tenant):
        g = np.flatnonzero(exp_tenant == tenant)
        t_rows = np.flatnonzero(item_tenant == tenant)
        order = np.argsort(item_created[t_rows], kind="stable")
        t_rows = t_rows[order]  # tenant items by creation time
        n_exist = np.searchsorted(item_created[t_rows], exp_created[g], side="right")
        full = negatives is None or len(t_rows) < full_below
        if full:
            reps = n_exist
            grp = np.repeat(g, reps)
            offs = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
            rows = t_rows[offs]
        else:
            assert negatives is not None
            k = negatives
            u = rng.random((len(g), k))
            uni = t_rows[(u * n_exist[:, None]).astype(np.int64)]
            # same-category draws (rejection of items that did not exist yet)
            by_cat = t_rows[np.lexsort((item_created[t_rows], item_cat[t_rows]))]
            cats = item_cat[by_cat]
            pc = item_cat[pos_row[g]]
            start = np.searchsorted(cats, pc, side="left")
            stop = np.searchsorted(cats, pc, side="right")
            k2 = max(1, k // 2)
            v = rng.random((len(g), k2))
            same = by_cat[start[:, None] + (v * (stop - start)[:, None]).astype(np.int64)]
            same = np.where(item_created[same] <= exp_created[g][:, None], same, uni[:, :k2])
            grp = np.repeat(g, k + k2 + 1)
            rows = np.concatenate([uni, same, pos_row[g][:, None]], axis=1).reshape(-1)
        # dedupe (group, item row) and keep groups contiguous
        key = grp.astype(np.int64) * (len(items) + 1) + rows
        key = np.unique(key)
        grp = key // (len(items) + 1)
        rows = key % (len(items) + 1)
        out_g.append(grp)
        out_i.append(rows)
        out_n.append(n_exist[np.searchsorted(g, grp)])
    if not out_g:
        empty = np.empty(0, np.int64)
        return empty, empty, empty
    grp = np.concatenate(out_g)
    rows = np.concatenate(out_i)
    ncat = np.concatenate(out_n)
    order = np.argsort(grp, kind="stable")
    grp, rows, ncat = grp[order], rows[order], ncat[order]
    # drop groups whose positive is not among the candidates
    is_pos = rows == pos_row[grp]
    has_pos = np.bincount(grp, weights=is_pos, minlength=len(exp_rows)) > 0
    if not has_pos.all():
        log.warning("%d expenses dropped: item created after filing", int((~has_pos).sum()))
        keep = has_pos[grp]
        grp, rows, ncat = grp[keep], rows[keep], ncat[keep]
    return grp, rows, ncat


@dataclass(frozen=True, slots=True)
class Drawn:
    """The candidate lists of the kept expenses, before any feature (``draw``)."""

    exp_rows: I64  # per group: row in history.expenses
    which: I64  # per group: index of its snapshot in ``snaps``
    snaps: list[date]  # the snapshot dates, ascending
    group: I64  # per pair: group index, non-decreasing
    rows: I64  # per pair: candidate row in history.items
    n_candidates: I64  # per pair: the catalogue size when the expense was filed

    def snapshot_items(self, history: History) -> dict[date, I64]:
        """Per snapshot read, the distinct item ids its pairs look up."""
        item_ids = history.items["id"].to_numpy(dtype=np.int64)[self.rows]
        row_snap = self.which[self.group]
        return {
            self.snaps[int(s)]: np.unique(item_ids[row_snap == s]) for s in np.unique(self.which)
        }


def draw(
    history: History,
    exp_rows: I64,
    snapshot_days: list[date],
    *,
    negatives: int | None,
    rng: np.random.Generator,
) -> Drawn:
    """The candidate pairs of ``exp_rows`` (``candidate_rows``) and the snapshot each expense
    reads (the latest on or before its day; expenses before the first snapshot are skipped)."""
    snaps = sorted(snapshot_days)
    snap_day = np.array([fs.to_day(d) for d in snaps], dtype=np.int64)
    e_day = history.expenses["day"].to_numpy(dtype=np.int64)[exp_rows]
    which = np.searchsorted(snap_day, e_day, side="right") - 1
    ok = which >= 0
    if not ok.all():
        log.warning("%d expenses before the first snapshot: skipped", int((~ok).sum()))
        exp_rows, which = exp_rows[ok], which[ok]
    grp, rows, ncat = candidate_rows(history, exp_rows, negatives=negatives, rng=rng)
    # renumber groups to those kept
    kept, grp = np.unique(grp, return_inverse=True)
    return Drawn(exp_rows[kept], which[kept], snaps, grp.astype(np.int64), rows, ncat)


def build_pairs(
    history: History,
    exp_rows: I64,
    snapshot_days: list[date],
    tables_for: Callable[[date], fs.FeatureTables],
    *,
    negatives: int | None,
    rng: np.random.Generator,
) -> PairSet:
    """Pairs for ``exp_rows`` with point-in-time features (see module docstring)."""
    drawn = draw(history, exp_rows, snapshot_days, negatives=negatives, rng=rng)
    return assemble_pairs(history, drawn, tables_for)


def assemble_pairs(
    history: History, drawn: Drawn, tables_for: Callable[[date], fs.FeatureTables]
) -> PairSet:
    """The drawn pairs' features, each expense's from its snapshot (asked for once each)."""
    exp_rows, which, snaps = drawn.exp_rows, drawn.which, drawn.snaps
    grp, rows, ncat = drawn.group, drawn.rows, drawn.n_candidates
    n = len(rows)
    num = np.empty((n, len(fs.NUMERIC_FEATURES)), dtype=np.float32)
    cat = np.empty((n, len(fs.CATEGORICAL_FEATURES)), dtype=object)
    cands = history_candidates(history)
    ctx = context_batch(history, exp_rows)
    row_snap = which[grp]
    for s in np.unique(which):
        sel = np.flatnonzero(row_snap == s)
        groups = np.unique(grp[sel])
        local = np.searchsorted(groups, grp[sel])
        sub_ctx = ctx.take(groups)
        mi = fs.assemble_batch(
            sub_ctx,
            local.astype(np.int64),
            cands.take(rows[sel]),
            tables_for(snaps[int(s)]),
            n_candidates=ncat[sel],
        )
        num[sel] = mi.num
        cat[sel] = mi.cat
    item_ids = cands.item_ids[rows]
    exp_item = history.expenses["item_id"].to_numpy(dtype=np.int64)[exp_rows]
    label = (item_ids == exp_item[grp]).astype(np.float32)
    return PairSet(
        num=num,
        cat=cat,
        label=label,
        group=grp.astype(np.int64),
        item_ids=item_ids,
        exp_rows=exp_rows,
        snapshot=[snaps[int(s)] for s in which],
    )
