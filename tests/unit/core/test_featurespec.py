"""The shared feature definition: tables on disk (memory-mapped), assembly and its defaults."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from tests.unit.training import handmade
from tests.unit.training.handmade import AS_OF

from rankswap import featurespec as fs
from rankswap.featurespec.assembly import context_terms
from rankswap.featurespec.serving import (
    PARTY_KEEP,
    SERVING_KEEP,
    TERM_KEEP,
    PartyRows,
    ServingBase,
    known_terms,
)
from rankswap.productdb import ProductDB
from rankswap_training import dataset, features
from rankswap_training.features import build_tables


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory: pytest.TempPathFactory) -> fs.FeatureTables:
    directory = tmp_path_factory.mktemp("features")
    build_tables(handmade.history(), AS_OF).write(directory)
    return fs.FeatureTables.open(directory)


def _candidates(ids: list[int]) -> fs.Candidates:
    h = handmade.history()
    all_items = dataset.history_candidates(h)
    return all_items.take(np.searchsorted(all_items.item_ids, ids))


def _col(mi: fs.ModelInput, name: str) -> np.ndarray:
    return mi.num[:, fs.NUMERIC_FEATURES.index(name)]


def test_tokenize() -> None:
    assert fs.tokenize("Taxi  タクシー代 3月") == ["taxi", "タク", "クシ", "シー", "ー代", "3月"]
    assert fs.tokenize("") == []
    assert len(fs.tokenize(" ".join(f"w{i}" for i in range(40)))) == fs.MAX_TERMS


def test_write_then_open_is_memory_mapped(tmp_path: Path) -> None:
    built = build_tables(handmade.history(), AS_OF)
    files = built.write(tmp_path)
    assert {p.name for p in files} >= {"item.arrow", "terms.arrow", "tables.json"}
    opened = fs.FeatureTables.open(tmp_path)
    assert opened.as_of == AS_OF and opened.schema_version == fs.FEATURE_SCHEMA_VERSION
    assert opened.row_counts == built.row_counts and opened.nbytes == built.nbytes
    for name, t in built.tables.items():
        o = opened.tables[name]
        np.testing.assert_array_equal(o.keys, t.keys)
        assert not o.keys.flags.owndata and not o.keys.flags.writeable  # a view on the map
        for c in t.columns:
            np.testing.assert_array_equal(o.columns[c], t.columns[c])
            assert o.columns[c].dtype == np.float32


def test_open_refuses_another_schema(tmp_path: Path) -> None:
    build_tables(handmade.history(), AS_OF).write(tmp_path)
    meta = json.loads((tmp_path / fs.META_FILE).read_text())
    meta["schema_version"] = "9.9.9"
    (tmp_path / fs.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(fs.FeatureTablesError, match=r"9\.9\.9"):
        fs.FeatureTables.open(tmp_path)
    with pytest.raises(fs.FeatureTablesError, match="not a feature folder"):
        fs.FeatureTables.open(tmp_path / "nowhere")


def test_assemble_known_rows(on_disk: fs.FeatureTables) -> None:
    ctx = fs.RankContext("a", 100, 200, "タクシー 移動", 2500.0, AS_OF, "営業部", "taxi")
    mi = fs.assemble(ctx, _candidates([10, 11, 12]), on_disk)
    assert mi.num.shape == (3, len(fs.NUMERIC_FEATURES)) and mi.num.dtype == np.float32
    assert mi.cat.shape == (3, len(fs.CATEGORICAL_FEATURES))
    assert list(mi.cat[0]) == ["旅費交通費", "6110", "taxi", "営業部"]
    assert _col(mi, "emp_item_days_since_use")[0] == 11  # 2026-01-20 -> 2026-01-31
    assert _col(mi, "emp_item_recency_rank")[1] == 1
    assert _col(mi, "log_n_candidates")[0] == pytest.approx(np.log1p(3))
    assert _col(mi, "desc_cat_max")[0] > _col(mi, "desc_cat_max")[2]  # taxi words -> cat 1
    assert _col(mi, "industry_cat_share")[0] == pytest.approx(0.6)
    assert (mi.item_default_rows, mi.unknown_employee_rows, mi.unknown_terms) == (0, 0, 0)


def test_assemble_defaults_for_new_item_and_new_employee(on_disk: fs.FeatureTables) -> None:
    ctx = fs.RankContext("a", 999, None, "zzz unseen", 800.0, AS_OF)
    mi = fs.assemble(ctx, _candidates([10, 13]), on_disk)
    new = 1  # item 13: created yesterday, never used
    assert _col(mi, "item_cnt_365d")[new] == 0
    assert _col(mi, "item_days_since_use")[new] == fs.DAYS_NEVER
    assert _col(mi, "item_amount_z")[new] == 0
    assert _col(mi, "item_age_days")[new] == 1
    assert _col(mi, "emp_item_recency_rank").tolist() == [fs.RANK_NEVER, fs.RANK_NEVER]
    assert _col(mi, "emp_cnt_365d").tolist() == [0, 0]
    assert mi.item_default_rows == 1
    assert mi.emp_item_default_rows == 2
    assert mi.unknown_employee_rows == 2 and mi.unknown_vendor_rows == 2
    assert mi.unknown_terms == 2
    assert list(mi.cat[:, 2:].ravel()) == ["", "", "", ""]


def test_new_item_gets_signal_through_its_category(on_disk: fs.FeatureTables) -> None:
    ctx = fs.RankContext("a", 100, 200, "taxi", 2500.0, AS_OF, "営業部", "taxi")
    mi = fs.assemble(ctx, _candidates([12, 13]), on_disk)  # 13 is new, in the taxi category
    for name in ("emp_cat_share_365d", "vendor_cat_share_365d", "desc_cat_mean"):
        assert _col(mi, name)[1] > _col(mi, name)[0], name


def test_empty_candidates(on_disk: fs.FeatureTables) -> None:
    ctx = fs.RankContext("a", 100, 200, "taxi", 1.0, AS_OF)
    mi = fs.assemble(ctx, fs.Candidates.empty(), on_disk)
    assert mi.num.shape == (0, len(fs.NUMERIC_FEATURES)) and mi.rows == 0


def test_narrowed_lookup_equals_plain_searchsorted() -> None:
    rng = np.random.default_rng(0)
    keys = np.unique(fs.pair_key(rng.integers(0, 50, 5000), rng.integers(0, 2000, 5000)))
    table = fs.Table(keys=keys, columns={})
    for query in (
        fs.pair_key(np.full(300, 7), rng.integers(0, 2100, 300)),  # one employee: narrowed
        fs.pair_key(rng.integers(0, 60, 300), rng.integers(0, 2100, 300)),  # many
        fs.pair_key(np.full(5, 999), np.arange(5)),  # employee not in table
    ):
        pos, found = table.lookup(query)
        expect = np.isin(query, keys)
        np.testing.assert_array_equal(found, expect)
        np.testing.assert_array_equal(keys[pos[found]], query[found])


def test_training_batch_equals_serving_assemble(small_db_url: str, tmp_path: Path) -> None:
    """Rows built for training (many contexts at once, in-memory tables) equal what serving
    computes for each expense alone from memory-mapped tables."""
    with ProductDB(small_db_url) as db:
        history = features.load_history(db, before=date(2026, 3, 31))
    snap = date(2026, 3, 20)
    built = features.build_tables(history, snap)
    built.write(tmp_path)
    served_tables = fs.FeatureTables.open(tmp_path)
    days = history.days
    rows = np.flatnonzero(days == fs.to_day(date(2026, 3, 24)))[:12]
    assert len(rows) > 3
    pairs = dataset.build_pairs(
        history, rows, [snap], lambda d: built, negatives=None, rng=np.random.default_rng(0)
    )
    cands = dataset.history_candidates(history)
    e = history.expenses
    for g, r in enumerate(pairs.exp_rows):
        sel = pairs.group == g
        item_rows = np.searchsorted(cands.item_ids, pairs.item_ids[sel])
        vendor = int(e["vendor_id"].iloc[r])
        ctx = fs.RankContext(
            tenant_id=str(e["tenant_id"].iloc[r]),
            employee_id=int(e["employee_id"].iloc[r]),
            vendor_id=None if vendor < 0 else vendor,
            description=str(e["description"].iloc[r]),
            amount=float(e["amount"].iloc[r]),
            expense_date=date(2026, 3, 24),
            employee_department=str(e["department"].iloc[r]),
            vendor_industry=str(e["industry"].iloc[r]),
            vendor_name=str(e["vendor_name"].iloc[r]),
        )
        served = fs.assemble(ctx, cands.take(item_rows), served_tables)
        np.testing.assert_array_equal(served.num, pairs.num[sel])
        np.testing.assert_array_equal(served.cat, pairs.cat[sel])


def test_opened_tables_gather_through_a_zero_copy_matrix(on_disk: fs.FeatureTables) -> None:
    rng = np.random.default_rng(3)
    for name, table in on_disk.tables.items():
        assert table.matrix is not None, name
        assert not table.matrix.flags.writeable and not table.matrix.flags.owndata
        for j, c in enumerate(fs.TABLES[name]):
            np.testing.assert_array_equal(table.matrix[j], table.columns[c])
        query = np.concatenate([table.keys[rng.integers(0, len(table), 20)], [-5, 2**40]])
        pos, found = table.lookup(query)
        defaults = np.arange(1, len(fs.TABLES[name]) + 1, dtype=np.float32) * -7
        got = table.gather(pos, found, defaults)
        per_column = fs.Table(keys=table.keys, columns=table.columns)  # no matrix: fallback
        np.testing.assert_array_equal(per_column.gather(pos, found, defaults), got)
        for j, c in enumerate(fs.TABLES[name]):
            np.testing.assert_array_equal(got[j], table.get(c, pos, found, float(defaults[j])))


def test_assemble_is_the_same_with_and_without_matrices(on_disk: fs.FeatureTables) -> None:
    plain = fs.FeatureTables(
        as_of=on_disk.as_of,
        schema_version=on_disk.schema_version,
        tables={n: fs.Table(keys=t.keys, columns=t.columns) for n, t in on_disk.tables.items()},
        terms=on_disk.terms,
    )
    cands = _candidates([10, 11, 12, 13])
    for ctx in (
        fs.RankContext("a", 100, 200, "タクシー 移動", 2500.0, AS_OF, "営業部", "taxi"),
        fs.RankContext("a", None, None, "", 0.0, AS_OF),
    ):
        a, b = fs.assemble(ctx, cands, on_disk), fs.assemble(ctx, cands, plain)
        np.testing.assert_array_equal(a.num, b.num)
        assert a.unknown_terms == b.unknown_terms


def test_single_context_equals_the_batch_path(on_disk: fs.FeatureTables) -> None:
    """Serving (one context: scalars, pair-range lookups, memoised categories) and training
    (many contexts) compute bit-identical rows."""
    cands = _candidates([10, 11, 12, 13])
    contexts = [
        fs.RankContext("a", 100, 200, "タクシー 移動", 2500.0, AS_OF, "営業部", "taxi"),
        fs.RankContext("a", 999, None, "zzz unseen", 800.0, AS_OF),
        fs.RankContext("a", None, 200, "", -3.0, AS_OF, "", "taxi"),
    ]
    batch = fs.assemble_batch(
        fs.ContextBatch.from_contexts(contexts),
        np.repeat(np.arange(3), len(cands)),
        cands.take(np.tile(np.arange(len(cands)), 3)),
        on_disk,
    )
    for i, ctx in enumerate(contexts):
        one = fs.assemble(ctx, cands, on_disk)
        rows = slice(i * len(cands), (i + 1) * len(cands))
        assert one.num.tobytes() == batch.num[rows].tobytes()
        assert (one.cat == batch.cat[rows]).all()
    assert fs.assemble(contexts[0], cands, on_disk).num.tobytes() == (
        fs.assemble(contexts[0], cands, on_disk).num.tobytes()  # memoised second call
    )


def test_key_range_is_the_rows_of_one_high_id() -> None:
    rng = np.random.default_rng(1)
    keys = np.unique(fs.pair_key(rng.integers(0, 40, 3000), rng.integers(0, 3000, 3000)))
    keys = np.concatenate([keys, fs.pair_key([2**31 - 1] * 2, [0, 2**31 - 1])])  # the top ids
    table = fs.Table(keys=keys, columns={})
    for high in (0, 7, 39, 41, 2**31 - 1, -1):
        lo, hi = table.key_range(high)
        expect = np.flatnonzero((keys >> 32) == high) if high >= 0 else np.empty(0, np.int64)
        assert (lo, hi) == ((int(expect[0]), int(expect[-1]) + 1) if expect.size else (lo, lo))
    assert fs.Table(keys=np.empty(0, np.int64), columns={}).key_range(3) == (0, 0)


def test_term_index_is_the_sorted_position(on_disk: fs.FeatureTables) -> None:
    index = on_disk.term_index()
    assert index is on_disk.term_index()
    for i, term in enumerate(on_disk.terms):
        assert index[term] == i


def _reference(
    ctx: fs.RankContext, cands: fs.Candidates, tables: fs.FeatureTables
) -> fs.ModelInput:
    """``assemble`` without the per-(candidates, tables) memo: the many-context path (never
    memoised) on a fresh copy of the candidates, every row drawn from ``ctx`` (the second
    context, with no description, adds no unknown terms)."""
    fresh = cands.take(np.arange(len(cands)))
    unused = fs.RankContext(ctx.tenant_id, None, None, "", 0.0, ctx.expense_date)
    batch = fs.ContextBatch.from_contexts([ctx, unused])
    return fs.assemble_batch(batch, np.zeros(len(fresh), np.int64), fresh, tables)


def _assert_same(got: fs.ModelInput, want: fs.ModelInput) -> None:
    assert got.num.dtype == want.num.dtype == np.float32
    assert got.num.shape == want.num.shape
    assert got.num.tobytes() == want.num.tobytes()  # bit-identical, NaN/-0.0 included
    assert got.cat.shape == want.cat.shape and (got.cat == want.cat).all()
    for name in (
        "rows",
        "item_default_rows",
        "emp_item_default_rows",
        "unknown_employee_rows",
        "unknown_vendor_rows",
        "unknown_terms",
    ):
        assert getattr(got, name) == getattr(want, name), name


def test_memoised_context_free_part_is_bit_identical_across_contexts_tenants_and_swaps(
    small_db_url: str, tmp_path: Path
) -> None:
    """The context-free part of ``assemble`` (item/category table values, categorical columns)
    is memoised on the DB's cached ``Candidates`` per tables object: every context, tenant and
    table swap (A -> B -> A, new tables at a reused address) gives exactly the unmemoised rows."""
    with ProductDB(small_db_url) as db:
        history = features.load_history(db, before=date(2026, 3, 31))
        tenants = db.tenant_ids()
        assert len(tenants) >= 2
        snaps = [date(2026, 3, 1), date(2026, 3, 20)]
        for i, snap in enumerate(snaps):
            features.build_tables(history, snap).write(tmp_path / str(i))
        opened = [fs.FeatureTables.open(tmp_path / str(i)) for i in range(len(snaps))]
        in_memory = features.build_tables(history, snaps[1])
        e = history.expenses
        contexts: dict[str, list[fs.RankContext]] = {}
        for tenant in tenants:
            rows = np.flatnonzero((e["tenant_id"] == tenant).to_numpy())[-6:]
            ctxs = [
                fs.RankContext(
                    tenant_id=tenant,
                    employee_id=int(e["employee_id"].iloc[r]),
                    vendor_id=None
                    if int(e["vendor_id"].iloc[r]) < 0
                    else int(e["vendor_id"].iloc[r]),
                    description=str(e["description"].iloc[r]),
                    amount=float(e["amount"].iloc[r]),
                    expense_date=date(2026, 3, 20 + k),
                    employee_department=str(e["department"].iloc[r]),
                    vendor_industry=str(e["industry"].iloc[r]),
                )
                for k, r in enumerate(rows)
            ]
            ctxs.append(fs.RankContext(tenant, None, None, "", 0.0, date(2026, 3, 21)))
            ctxs.append(fs.RankContext(tenant, 10**6, 10**6, "zzz", -5.0, date(2019, 1, 1)))
            contexts[tenant] = ctxs
        for tables in (opened[0], opened[1], in_memory, opened[0], opened[1]):  # swaps, back
            for tenant in tenants:
                cands = db.candidates(tenant)
                assert cands is db.candidates(tenant)  # the DB's cached object: memo in play
                for ctx in contexts[tenant]:
                    _assert_same(fs.assemble(ctx, cands, tables), _reference(ctx, cands, tables))
        cands = db.candidates(tenants[0])
        memo = cands._memo["serving"]
        assert len(memo) == SERVING_KEEP == 2  # the last two tables objects
        for entry in memo.values():  # holds values, not the (memory-mapped) tables themselves
            assert not any(isinstance(getattr(entry, f), fs.FeatureTables) for f in entry.__slots__)
        # many short-lived tables (addresses get reused): still exact, and the memo stays small
        ctx = contexts[tenants[0]][0]
        for i in range(8):
            tables = fs.FeatureTables.open(tmp_path / str(i % 2))
            _assert_same(fs.assemble(ctx, cands, tables), _reference(ctx, cands, tables))
            del tables
        assert len(memo) <= SERVING_KEEP


def test_gather_fills_defaults_where_keys_are_missing(on_disk: fs.FeatureTables) -> None:
    table = on_disk.tables["emp_item"]
    plain = fs.Table(keys=table.keys, columns=table.columns)  # column-by-column fallback
    defaults = np.array([0.0, 0.0, -1.0e9, 1000.0], dtype=np.float32)
    query = np.concatenate([table.keys[:3], np.array([-1, 2**40], np.int64), table.keys[-1:]])
    for q in (query, query[:0], query[3:5], table.keys[:2]):  # mixed, empty, none found, all
        pos, found = table.lookup(q)
        expect = np.stack([c[pos] for c in table.columns.values()]).astype(np.float32)
        expect[:, ~found] = defaults[:, None]
        for t in (table, plain):
            got = t.gather(pos, found, defaults)
            assert got.shape == expect.shape and got.tobytes() == expect.tobytes()


def test_serving_assemble_equals_the_training_path_on_generated_expenses(
    small_db_url: str,
) -> None:
    """``assemble`` (serving: a memoised template, pair tables read from the key's side) gives
    ``assemble_batch``'s rows bit for bit on every tenant's last expenses as the ranker builds
    them (``make_context``: department, industry, vendor name looked up), with every pair table
    hit and missed; candidates with a repeated item id take the training path (same rows).
    Its ``num`` is column-major."""
    with ProductDB(small_db_url) as db:
        history = features.load_history(db, before=date(2026, 3, 31))
        tables = features.build_tables(history, date(2026, 3, 28))
        e = history.expenses
        hit = {name: 0 for name in ("emp_item", "vendor_item", "emp_cat", "vendor_cat")}
        for tenant in db.tenant_ids():
            cands = db.candidates(tenant, with_names=True)
            mine = e[e["tenant_id"] == tenant].tail(60)
            for emp, ven, desc, amount in zip(
                mine["employee_id"],
                mine["vendor_id"],
                mine["description"],
                mine["amount"],
                strict=True,
            ):
                ctx = db.make_context(
                    fs.RankContext(
                        tenant,
                        employee_id=int(emp),
                        vendor_id=None if int(ven) < 0 else int(ven),
                        description=str(desc),
                        amount=float(amount),
                        expense_date=date(2026, 3, 30),
                    )
                )
                got = fs.assemble(ctx, cands, tables)
                _assert_same(got, _reference(ctx, cands, tables))
                assert got.num.flags.f_contiguous  # as the compiled trees read it: no transpose
                for name, col in (
                    ("emp_item", "emp_item_cnt_365d"),
                    ("vendor_item", "vendor_item_cnt_365d"),
                    ("emp_cat", "emp_cat_share_365d"),
                    ("vendor_cat", "vendor_cat_share_365d"),
                ):
                    hit[name] += bool((_col(got, col) > 0).any())
            twice = cands.take(np.concatenate([np.arange(len(cands)), [0]]))  # a repeated id
            _assert_same(fs.assemble(ctx, twice, tables), _reference(ctx, twice, tables))
            assert twice._memo["serving"][tables.token()] is None  # the training path
        assert all(hit.values()), hit  # every pair table is read from the key's side


def test_term_rows_are_memoised_per_tables_and_bounded(small_db_url: str) -> None:
    """Each vocabulary term's ``term_item`` / ``term_cat`` rows among the candidates are kept
    per (tables, term) in an LRU memo of ``TERM_KEEP``: descriptions made of more distinct
    terms than that give the training path's rows, and the memo stays at its bound."""
    with ProductDB(small_db_url) as db:
        history = features.load_history(db, before=date(2026, 3, 31))
        tenant = db.tenant_ids()[0]
        cands = db.candidates(tenant, with_names=True)
    tables = features.build_tables(history, date(2026, 3, 28))
    words = [str(t) for t in tables.terms.tolist() if fs.tokenize(str(t)) == [str(t)]]
    assert len(words) > TERM_KEEP + 64
    for k in range(0, TERM_KEEP + 64, fs.MAX_TERMS):
        text = " ".join(words[k : k + fs.MAX_TERMS])
        ctx = fs.RankContext(tenant, None, None, text, 1000.0, date(2026, 3, 30))
        _assert_same(fs.assemble(ctx, cands, tables), _reference(ctx, cands, tables))
    assert len(cands._memo["term_rows"]) == TERM_KEEP


def test_known_terms_are_context_terms_without_the_padding(on_disk: fs.FeatureTables) -> None:
    """Serving's ``known_terms`` gives ``context_terms``'s row for one context: the same
    (column, term id) of every known term, the same counts of known and unknown description
    terms, for known, unknown and missing descriptions, industries and departments."""
    vocab = [str(t) for t in on_disk.terms.tolist() if not str(t).startswith("\x01")]
    industries = [str(t)[3:] for t in on_disk.terms.tolist() if str(t).startswith("\x01i:")]
    departments = [str(t)[3:] for t in on_disk.terms.tolist() if str(t).startswith("\x01d:")]
    assert vocab and industries and departments
    cases = [
        (" ".join(vocab[:3]), industries[0], departments[0]),
        (f"{vocab[0]} zzunknown {vocab[1]} qqnone", "no such industry", departments[-1]),
        (" ".join(vocab[: fs.MAX_TERMS + 4]), "", ""),
        ("", industries[-1], "no such department"),
    ]
    for description, industry, department in cases:
        terms = fs.tokenize(description)
        row, unknown = context_terms([terms], [industry], [department], on_disk)
        want = [(j, tid) for j, tid in enumerate(row[0].tolist()) if tid >= 0]
        n_known = sum(1 for j, _ in want if j < fs.MAX_TERMS)
        assert known_terms(terms, industry, department, on_disk) == (want, n_known, unknown)
    assert any(j >= fs.MAX_TERMS for j, _ in known_terms([], industries[0], "", on_disk)[0])


def test_party_rows_are_one_memo_entry_per_key_and_tables(
    on_disk: fs.FeatureTables, tmp_path: Path
) -> None:
    """Every lookup of an employee's (vendor's) key (item- and category-level pair tables, its
    own count) is one entry per (tables, side, key) in an LRU memo of ``PARTY_KEEP``: known
    employees evicted and read again give the training path's rows, the memo stays at its
    bound, a repeated key reads the entry, and another tables object never reads it."""
    cands = _candidates([10, 11, 12, 13])
    known = [fs.RankContext("a", e, v, "taxi", 1200.0, AS_OF) for e, v in ((100, 7), (101, None))]
    strangers = [fs.RankContext("a", 10**6 + i, None, "", 1.0, AS_OF) for i in range(PARTY_KEEP)]
    for ctx in [*known, *strangers, *known]:
        _assert_same(fs.assemble(ctx, cands, on_disk), _reference(ctx, cands, on_disk))
    assert len(cands._memo["party_rows"]) == PARTY_KEEP
    assert (_col(fs.assemble(known[0], cands, on_disk), "emp_item_cnt_365d") > 0).any()
    base = ServingBase.of(cands, on_disk)
    assert base is not None
    staff = PartyRows.of("employee", 100, on_disk, base, cands)
    assert PartyRows.of("employee", 100, on_disk, base, cands) is staff
    assert staff.found and staff.count > 0 and staff.item_rows.shape[0] > 0
    assert not staff.item_values.flags.writeable  # shared by every request
    stranger = PartyRows.of("vendor", -1, on_disk, base, cands)
    assert not stranger.found and stranger.item_rows.shape[0] == stranger.cat_pos.shape[0] == 0
    build_tables(handmade.history(), AS_OF).write(tmp_path / "again")
    again = fs.FeatureTables.open(tmp_path / "again")
    for ctx in known:
        _assert_same(fs.assemble(ctx, cands, again), _reference(ctx, cands, again))
    again_base = ServingBase.of(cands, again)
    assert again_base is not None
    assert PartyRows.of("employee", 100, again, again_base, cands) is not staff
