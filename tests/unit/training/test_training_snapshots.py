"""The one windowed pass gives every snapshot the rows one aggregation per snapshot gives.

``snapshots.build`` (all snapshots at once, the looked-up keys only) against
``HistoryDB.build_tables`` (one full aggregation per as-of day, every tenant): the same rows
for every key the expenses look up, and the same assembled training pairs - on a generated
world longer than the 365-day window (items appear and drop out of it, snapshots before the
first expense and on days without expenses) and on a hand-made history with expenses on each
window's edge."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta

import numpy as np
import pytest

from rankswap import featurespec as fs
from rankswap.productdb import ProductDB
from rankswap_training import columnar, datagen, dataset, features, snapshots

from . import handmade

LONG = datagen.WorldConfig(seed=5, tenants=3, days=430, end=date(2026, 3, 31), scale=0.12)
TERM_TABLES = {"term_cat": "a", "term_item": "a", "emp_term": "b"}
"""Tables keyed by a vocabulary id, and which half of the pair key holds it."""


@pytest.fixture(scope="module")
def long_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[columnar.HistoryDB]:
    url = f"sqlite:///{tmp_path_factory.mktemp('long') / 'product.db'}"
    db = ProductDB(url, create=True)
    try:
        datagen.write_world(db, datagen.generate_world(LONG))
        hdb = columnar.HistoryDB.from_product_db(db, before=LONG.end + timedelta(days=1))
    finally:
        db.close()
    with hdb:
        yield hdb


def _by_term(
    tables: fs.FeatureTables, name: str
) -> dict[tuple[int | str, int | str], tuple[float, ...]]:
    """A table's rows keyed by (a, b), vocabulary ids replaced by their terms."""
    table = tables.tables[name]
    a, b = (table.keys >> 32).tolist(), (table.keys & 0xFFFFFFFF).tolist()
    terms = tables.terms.tolist()
    where = TERM_TABLES.get(name)
    if where == "a":
        a = [terms[t] for t in a]
    elif where == "b":
        b = [terms[t] for t in b]
    values = zip(*(table.columns[c].tolist() for c in fs.TABLES[name]), strict=True)
    return dict(zip(zip(a, b, strict=True), values, strict=True))


def assert_rows_of_the_full_snapshot(mine: fs.FeatureTables, full: fs.FeatureTables) -> None:
    """Every row of ``mine`` is the full snapshot's row for that key, value for value (float32
    sums may differ in the last bit: rtol 1e-6); every term ``mine`` knows the full one knows."""
    assert mine.as_of == full.as_of
    assert set(mine.terms.tolist()) <= set(full.terms.tolist())
    for name in fs.TABLES:
        got, want = _by_term(mine, name), _by_term(full, name)
        assert got.keys() <= want.keys(), name
        for key, values in got.items():
            np.testing.assert_allclose(
                values, want[key], rtol=1e-6, atol=0, err_msg=f"{name} {key}"
            )


def _pairs(
    history: features.History,
    rows: np.ndarray,
    snaps: list[date],
    tables_for: Callable[[date], fs.FeatureTables],
) -> dataset.PairSet:
    return dataset.build_pairs(
        history,
        rows,
        snaps,
        tables_for,
        negatives=None,
        rng=np.random.default_rng(0),
    )


def _sample(hdb: columnar.HistoryDB, n: int, seed: int) -> tuple[features.History, np.ndarray]:
    rng = np.random.default_rng(seed)
    pos = np.sort(rng.choice(hdb.count(), n, replace=False))
    return hdb.history_of(pos), np.arange(n, dtype=np.int64)


def test_the_windowed_pass_gives_the_pairs_of_one_aggregation_per_snapshot(
    long_db: columnar.HistoryDB,
) -> None:
    history, rows = _sample(long_db, 400, seed=1)
    first = long_db.first_day
    assert first is not None
    # weekly over the whole history (the first ones: a few days of history, keys appearing),
    # then daily over the last two weeks (as the hold-out); one before the first expense
    snaps = features.snapshot_dates(first - timedelta(days=3), LONG.end, 7)
    snaps += [LONG.end - timedelta(days=k) for k in range(1, 14) if k % 7]
    snaps = sorted(set(snaps))
    reads = snapshots.reads_of(history, rows, snaps)
    built = snapshots.build(long_db, history, [reads])
    assert set(built) == set(reads.as_of)
    full = {d: long_db.build_tables(d) for d in built}
    tenants: dict[date, set[str]] = {d: set() for d in built}
    for r, d in zip(reads.rows.tolist(), reads.as_of, strict=True):
        tenants[d].add(str(history.expenses["tenant_id"].iloc[r]))
    for d, tables in built.items():
        assert_rows_of_the_full_snapshot(tables, full[d])
        # every item of a read tenant that the full snapshot has, this one has
        items = long_db.items
        theirs = set(items["id"][items["tenant_id"].isin(tenants[d])].tolist())
        want = set(full[d].tables["item"].keys.tolist()) & theirs
        assert want <= set(tables.tables["item"].keys.tolist())

    # the data covers what the pass must get right: items entering and leaving the window
    last_days = [full[d].tables["item"] for d in sorted(full)]
    seen = [set(t.keys.tolist()) for t in last_days]
    assert any(a - b for a, b in itertools.pairwise(seen)), "no item left the window"
    assert any(b - a for a, b in itertools.pairwise(seen)), "no item entered it"

    got = _pairs(history, rows, snaps, lambda d: built[d])
    want_pairs = _pairs(history, rows, snaps, lambda d: full[d])
    assert len(got) == len(want_pairs) > 1000
    np.testing.assert_array_equal(got.item_ids, want_pairs.item_ids)
    np.testing.assert_array_equal(got.cat, want_pairs.cat)
    np.testing.assert_allclose(got.num, want_pairs.num, rtol=1e-6, atol=1e-7)


def test_drawn_candidates_only_give_the_pairs_of_full_snapshots(
    long_db: columnar.HistoryDB,
) -> None:
    # as model train does it: candidates drawn first (sampled negatives), then only their
    # items probed; the same draws assembled with the full snapshots give the same pairs
    history, rows = _sample(long_db, 300, seed=3)
    first = long_db.first_day
    assert first is not None
    snaps = features.snapshot_dates(first + timedelta(days=20), LONG.end, 7)
    drawn = dataset.draw(history, rows, snaps, negatives=4, rng=np.random.default_rng(5))
    items = drawn.snapshot_items(history)
    reads = snapshots.Reads(drawn.exp_rows, [drawn.snaps[int(w)] for w in drawn.which])
    built = snapshots.build(long_db, history, [reads], items)
    everything = snapshots.build(long_db, history, [reads])
    for d, tables in built.items():
        n_items = len(everything[d].tables["item"])
        assert len(tables.tables["item"]) < n_items  # fewer items probed than the tenants'
        assert_rows_of_the_full_snapshot(tables, long_db.build_tables(d))
    got = dataset.assemble_pairs(history, drawn, lambda d: built[d])
    want = dataset.assemble_pairs(history, drawn, long_db.build_tables)
    assert len(got) > 1000
    np.testing.assert_array_equal(got.cat, want.cat)
    np.testing.assert_allclose(got.num, want.num, rtol=1e-6, atol=1e-7)


def test_snapshots_before_any_expense_are_empty(long_db: columnar.HistoryDB) -> None:
    history, rows = _sample(long_db, 50, seed=2)
    first = long_db.first_day
    assert first is not None
    # every expense reads a snapshot dated on or before the history's first day
    reads = snapshots.Reads(rows, [first] * len(rows))
    (tables,) = snapshots.build(long_db, history, [reads]).values()
    assert all(len(t) == 0 for t in tables.tables.values())
    assert len(tables.terms) == 0


def _edge_rows() -> list[dict[str, object]]:
    """Expenses 1 day inside and on the day outside each window (365, 90, 30, 60 days)."""
    base = {str(k): v for k, v in handmade.raw_expenses().iloc[0].to_dict().items()}
    out: list[dict[str, object]] = []
    i = 100
    for days in (365, 366, 90, 91, 30, 31, fs.TERM_ITEM_DAYS, fs.TERM_ITEM_DAYS + 1):
        d = handmade.AS_OF - timedelta(days=days)
        i += 1
        out.append(
            {
                **base,
                "id": i,
                "expense_date": d,
                "created_at": datetime.combine(d, datetime.min.time()),
                "item_id": 13 if days % 2 else 12,
                "category_id": 1 if days % 2 else 2,
                "employee_id": 101,
                "description": f"edge{days} taxi",
                "amount": 100.0 * days,
            }
        )
    return out


def test_each_window_edge_as_one_aggregation_per_snapshot() -> None:
    history = handmade.history(_edge_rows())
    hdb = columnar.HistoryDB.from_history(history)
    with hdb:
        snaps = [handmade.AS_OF + timedelta(days=k) for k in (-1, 0, 1, 2)]
        # every expense of the history reads each snapshot once
        n = len(history.expenses)
        rows = np.tile(np.arange(n, dtype=np.int64), len(snaps))
        reads = snapshots.Reads(rows, [d for d in snaps for _ in range(n)])
        built = snapshots.build(hdb, history, [reads])
        for d in snaps:
            full = hdb.build_tables(d)
            assert_rows_of_the_full_snapshot(built[d], full)
            for name in fs.TABLES:  # every key of the full snapshot is looked up here
                assert len(built[d].tables[name]) == len(full.tables[name]), (d, name)
            assert built[d].terms.tolist() == full.terms.tolist()
    # by hand, as of AS_OF: item 12 has the expenses 90, 60, 30 and 6 days back (366: out),
    # item 13 those 365, 91, 61 and 31 days back
    item = built[handmade.AS_OF].tables["item"]
    pos, found = item.lookup(np.array([12, 13], dtype=np.int64))
    assert found.all()
    counts = [[float(item.columns[c][p]) for c in ("cnt_30d", "cnt_90d", "cnt_365d")] for p in pos]
    assert counts == [[2.0, 4.0, 4.0], [0.0, 2.0, 4.0]]
