"""The item-text features: the expense vs each candidate's own name and code, the ``term_item``
and ``emp_term`` tables, and their documented defaults."""

from __future__ import annotations

import math
from datetime import date, datetime

import numpy as np
import pytest
from tests.unit.training import handmade
from tests.unit.training.handmade import AS_OF

from rankswap import featurespec as fs
from rankswap.featurespec.inputs import LruMemo
from rankswap.featurespec.itemtext import (
    EMPLOYEE_KEEP,
    VENDOR_KEEP,
    _distinct,
    _distinct_sorted,
)
from rankswap.productdb import ProductDB
from rankswap_training import dataset, features
from rankswap_training.features import build_tables


def _catalogue(names: list[str]) -> fs.Candidates:
    n = len(names)

    def objs(values: list[str]) -> np.ndarray:
        out = np.empty(n, dtype=object)
        out[:] = values
        return out

    return fs.Candidates(
        item_ids=np.arange(1, n + 1, dtype=np.int64),
        codes=objs([f"6120-{i:05d}" for i in range(n)]),
        names=objs(names),
        category_ids=np.ones(n, dtype=np.int64),
        categories=objs(["会議費"] * n),
        account_codes=objs(["6120"] * n),
        created_at=np.full(n, np.datetime64("2026-01-01T00:00:00", "s")),
    )


def _no_tables() -> fs.FeatureTables:
    empty: dict[str, dict[str, np.ndarray]] = {
        name: {"key": np.empty(0, np.int64), **{c: np.empty(0, np.float32) for c in cols}}
        for name, cols in fs.TABLES.items()
    }
    return fs.FeatureTables.from_arrays(AS_OF, empty, [])


def _ctx(description: str, vendor_name: str = "", employee: int | None = None) -> fs.RankContext:
    return fs.RankContext(
        tenant_id="a",
        employee_id=employee,
        vendor_id=None,
        description=description,
        amount=1000.0,
        expense_date=AS_OF,
        vendor_name=vendor_name,
    )


def _col(mi: fs.ModelInput, name: str) -> np.ndarray:
    return mi.num[:, fs.NUMERIC_FEATURES.index(name)]


def test_the_text_features_are_a_run_of_the_numeric_features() -> None:
    assert fs.FEATURE_SCHEMA_VERSION == "1.1.0"
    assert fs.ITEM_TEXT_FEATURES == (
        "name_match_n",
        "name_match_share",
        "name_idf_cover",
        "vendor_name_idf_cover",
        "emp_name_share",
        "emp_name_rest",
        "desc_item_mean",
        "desc_item_max",
        "name_alone_match",
    )
    assert "term_item" in fs.TABLES and "emp_term" in fs.TABLES


def test_item_terms_hold_name_code_and_the_numbers_of_the_name() -> None:
    terms = fs.item_terms("PJ-0130-X", "PJ-0130 タクシー代")
    assert "pj" in terms and "0130" in terms and "タク" in terms and "ー代" in terms
    assert len(terms) == len(set(terms))
    assert fs.item_terms("", "") == ()


def test_split_siblings_are_told_apart_by_the_qualifier_the_description_names() -> None:
    cands = _catalogue(["会議費（社内）", "会議費（社外）", "タクシー代"])
    mi = fs.assemble(_ctx("社内打合せ 会議"), cands, _no_tables())
    # terms: 会議 議費 社内 | 会議 議費 社外 | タク クシ シー ー代; the description holds 会議, 社内
    np.testing.assert_array_equal(_col(mi, "name_match_n"), [2.0, 1.0, 0.0])
    np.testing.assert_allclose(_col(mi, "name_match_share"), [2 / 3, 1 / 3, 0.0], atol=5e-5)
    common, rare = math.log1p(3 / 2), math.log1p(3 / 1)  # df 2 and 1 among 3 candidates
    np.testing.assert_allclose(
        _col(mi, "name_idf_cover"),
        [(common + rare) / (2 * common + rare), common / (2 * common + rare), 0.0],
        atol=5e-5,
    )
    # the qualifier weighs more than the shared term: rarity within the candidate list
    assert _col(mi, "name_idf_cover")[0] > 2 * _col(mi, "name_idf_cover")[1]
    # 社内 singles out the first item within the category; 会議 is shared by both splits
    np.testing.assert_array_equal(_col(mi, "name_alone_match"), [1.0, 0.0, 0.0])


def test_vendor_name_vs_item_name() -> None:
    cands = _catalogue(["会議費（社内）", "タクシー代", "Taxi (company-wide)"])
    mi = fs.assemble(_ctx("移動", vendor_name="タクシー代ショップ"), cands, _no_tables())
    cover = _col(mi, "vendor_name_idf_cover")
    assert cover[1] == pytest.approx(1.0) and cover[0] == 0.0 and cover[2] == 0.0
    assert not _col(mi, "name_match_n").any()  # the description matches nothing


def test_documented_defaults_without_rows_or_text() -> None:
    cands = _catalogue(["会議費（社内）", "", "電動キックボード"])
    mi = fs.assemble(_ctx(""), cands, _no_tables())
    text = mi.num[:, [fs.NUMERIC_FEATURES.index(f) for f in fs.ITEM_TEXT_FEATURES]]
    assert not text.any() and np.isfinite(text).all()


def _older_row() -> dict[str, object]:
    """An expense 91 days before AS_OF: inside the 365-day window, outside ``TERM_ITEM_DAYS``."""
    row = {str(k): v for k, v in handmade.raw_expenses().iloc[1].to_dict().items()}
    row.update(id=9, expense_date=date(2025, 11, 1), created_at=datetime(2025, 11, 1, 12))
    return row


@pytest.fixture(scope="module")
def tables() -> fs.FeatureTables:
    return build_tables(handmade.history([_older_row()]), AS_OF)


def test_term_item_is_p_item_given_term_of_the_last_days(tables: fs.FeatureTables) -> None:
    t = tables.tables["term_item"]
    index = tables.term_index()

    def share(term: str, item: int) -> float:
        pos, found = t.lookup(fs.pair_key([index[term]], [item]))
        return float(t.columns["share"][pos[0]]) if found[0] else 0.0

    # within 60 days of 2026-01-31: タクシー twice (item 10; the third use, 2025-11-01, is
    # older), taxi once (item 11), book once (item 12)
    assert share("タク", 10) == pytest.approx(2 / (2 + 2))
    assert share("taxi", 11) == pytest.approx(1 / (1 + 2))
    assert share("book", 12) == pytest.approx(1 / (1 + 2))
    assert share("taxi", 10) == 0.0
    h = handmade.history()
    all_items = dataset.history_candidates(h)
    cands = all_items.take(np.searchsorted(all_items.item_ids, [10, 11, 13]))
    mi = fs.assemble(_ctx("タクシー 移動", employee=100), cands, tables)
    # terms タク クシ シー 移動: item 10 holds 2/4 for the first three, 1/3 for 移動
    np.testing.assert_allclose(
        _col(mi, "desc_item_mean"), [(3 * 0.5 + 1 / 3) / 4, 0.0, 0.0], atol=5e-5
    )
    np.testing.assert_allclose(_col(mi, "desc_item_max"), [0.5, 0.0, 0.0], atol=5e-5)


def test_emp_term_weighs_the_employees_recent_item_names() -> None:
    tables = build_tables(handmade.history(), AS_OF)
    t = tables.tables["emp_term"]
    index = tables.term_index()
    pos, found = t.lookup(fs.pair_key([100], [index["新"]]))
    assert found[0]
    # employee 100: item 10 on 01-01 and 01-20, item 11 (タクシー代（新）) on 01-30
    w = [0.5 ** (age / fs.EMP_TERM_HALF_LIFE_DAYS) for age in (30, 11, 1)]
    assert float(t.columns["share"][pos[0]]) == pytest.approx(w[2] / sum(w), rel=1e-6)
    h = handmade.history()
    all_items = dataset.history_candidates(h)
    cands = all_items.take(np.searchsorted(all_items.item_ids, [10, 11, 12, 13]))
    known = fs.assemble(_ctx("", employee=100), cands, tables)
    share = _col(known, "emp_name_share")
    # item 11, used last, shares most; item 10 shares the taxi bigrams; 書籍 and the brand-new
    # 電動キックボード share no term with what employee 100 filed (the documented default 0)
    assert share[1] > share[0] > 0.5 and share[2] == 0.0 and share[3] == 0.0
    unknown = fs.assemble(_ctx("", employee=None), cands, tables)
    assert not _col(unknown, "emp_name_share").any()


def test_batch_of_contexts_equals_one_context_at_a_time(tables: fs.FeatureTables) -> None:
    h = handmade.history()
    cands = dataset.history_candidates(h)
    contexts = [
        _ctx("タクシー 移動", vendor_name="タクシー代ショップ", employee=100),
        _ctx("book 書籍", employee=101),
        _ctx("taxi", employee=None),
    ]
    n = len(cands)
    batch = fs.assemble_batch(
        fs.ContextBatch.from_contexts(contexts),
        np.repeat(np.arange(3, dtype=np.int64), n),
        cands.take(np.tile(np.arange(n), 3)),
        tables,
    )
    for k, ctx in enumerate(contexts):
        one = fs.assemble(ctx, cands, tables)
        np.testing.assert_array_equal(one.num, batch.num[k * n : (k + 1) * n])
    text = batch.num[:, [fs.NUMERIC_FEATURES.index(f) for f in fs.ITEM_TEXT_FEATURES]]
    assert (text != 0).any(axis=0).all()  # every text feature is exercised


def test_serving_date_is_irrelevant_to_the_name_features() -> None:
    cands = _catalogue(["会議費（社内）", "会議費（社外）"])
    a = fs.assemble(_ctx("社外"), cands, _no_tables())
    later = fs.RankContext(
        tenant_id="a",
        employee_id=None,
        vendor_id=None,
        description="社外",
        amount=1000.0,
        expense_date=date(2027, 1, 1),
    )
    b = fs.assemble(later, cands, _no_tables())
    np.testing.assert_array_equal(_col(a, "name_idf_cover"), _col(b, "name_idf_cover"))
    assert _col(a, "name_idf_cover")[1] > _col(a, "name_idf_cover")[0]


def test_serving_fast_path_equals_the_dense_training_path(small_db_url: str) -> None:
    """Serving computes the text features from the memoised name index, touching only the pairs
    of the request's terms (``itemtext._one_context``); training computes every pair densely
    (``_many_contexts``). On a generated world, for real expenses and for contexts that hit
    every feature (the description and the vendor name are item names, employees with and
    without ``emp_term`` rows), the rows are bit-identical."""
    with ProductDB(small_db_url) as db:
        history = features.load_history(db, before=date(2026, 3, 31))
        tenant = db.tenant_ids()[0]
        cands = db.candidates(tenant, with_names=True)
    tables = build_tables(history, date(2026, 3, 28))
    e = history.expenses[history.expenses["tenant_id"] == tenant].tail(300)
    employees = [int(x) for x in e["employee_id"]]
    names = [str(x) for x in cands.names.tolist()]
    contexts = [
        fs.RankContext(
            tenant_id=tenant,
            employee_id=emp,
            vendor_id=None,
            description=str(desc),
            amount=float(amount),
            expense_date=date(2026, 3, 29),
            vendor_name=str(vendor),
        )
        for emp, desc, amount, vendor in zip(
            employees, e["description"], e["amount"], e["vendor_name"], strict=True
        )
    ]
    contexts += [
        _ctx(f"{names[k]} {names[k + 1]}", vendor_name=names[k + 2], employee=employees[k])
        for k in range(0, 30, 3)
    ]
    holders: dict[tuple[int, str], int] = {}
    for cat, code, name in zip(cands.category_ids, cands.codes, cands.names, strict=True):
        for term in fs.item_terms(str(code), str(name)):
            holders[int(cat), term] = holders.get((int(cat), term), 0) + 1
    alone = [t for (_, t), c in holders.items() if c == 1 and t in fs.tokenize(t)][:5]
    assert alone  # terms one item holds alone in its category: name_alone_match
    contexts += [_ctx(" ".join(alone), employee=employees[0])]
    contexts += [_ctx(names[0], employee=None), _ctx("", employee=10**6), _ctx("zz 00")]
    n = len(cands)
    batch = fs.assemble_batch(
        fs.ContextBatch.from_contexts(contexts),
        np.repeat(np.arange(len(contexts), dtype=np.int64), n),
        cands.take(np.tile(np.arange(n), len(contexts))),
        tables,
    )
    cols = [fs.NUMERIC_FEATURES.index(f) for f in fs.ITEM_TEXT_FEATURES]
    for k, ctx in enumerate(contexts):
        one = fs.assemble(ctx, cands, tables)
        np.testing.assert_array_equal(one.num, batch.num[k * n : (k + 1) * n], err_msg=str(k))
    assert "name_index" in cands._memo  # the serving path ran
    assert (batch.num[:, cols] != 0).any(axis=0).all()  # every text feature is exercised


def test_distinct_rows_equal_numpy_unique() -> None:
    rng = np.random.default_rng(3)
    for rows in (np.empty(0, np.int64), np.array([4, 4, 0, 9, 4]), rng.integers(0, 50, 300)):
        got = _distinct(rows.astype(np.int64), 50)
        want = np.unique(rows, return_inverse=True)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_distinct_sorted_rows_equal_numpy_unique() -> None:
    rng = np.random.default_rng(4)
    for rows in (np.array([7]), np.array([0, 0, 3, 9, 9, 9]), np.sort(rng.integers(0, 50, 300))):
        got = _distinct_sorted(rows.astype(np.int64))
        want = np.unique(rows, return_inverse=True)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_vendor_part_is_memoised_per_name_and_bounded() -> None:
    """A vendor name's ``vendor_name_idf_cover`` is kept per name on the candidates in an LRU
    memo of ``VENDOR_KEEP``: repeated and evicted names give the unmemoised rows, a name that
    names no item is kept as "nothing", and the memo never holds more than its bound."""
    cands = _catalogue(["会議費（社内）", "タクシー代", "Taxi (company-wide)"])
    names = ["タクシー代ショップ", "Taxi Kyoto", "nothing alike"]
    want = {
        v: fs.assemble(_ctx("移動", vendor_name=v), cands.take(np.arange(3)), _no_tables())
        for v in names
    }
    assert (_col(want["Taxi Kyoto"], "vendor_name_idf_cover") > 0).sum() == 1
    for v in [*names, *(f"vendor {k}" for k in range(VENDOR_KEEP + 10)), *names]:
        got = fs.assemble(_ctx("移動", vendor_name=v), cands, _no_tables())
        if v in want:
            assert got.num.tobytes() == want[v].num.tobytes()
    memo = cands._memo["vendor_names"]
    assert len(memo) == VENDOR_KEEP
    assert memo.get("Taxi Kyoto")[1] and not memo.get("vendor 0")[1]
    assert memo.get("nothing alike") == (None, True)


def test_employee_part_is_memoised_per_tables_and_bounded(tables: fs.FeatureTables) -> None:
    """The employee's ``emp_term`` part is kept per (tables, employee) on the candidates in an
    LRU memo of ``EMPLOYEE_KEEP``: repeated and evicted employees give the unmemoised rows, and
    the memo never holds more than its bound (the least recently used go first)."""
    h = handmade.history()
    cands = dataset.history_candidates(h)
    want = {
        e: fs.assemble(_ctx("タクシー", employee=e), cands.take(np.arange(len(cands))), tables)
        for e in (100, 101)
    }
    for e in [100, 101, *range(1000, 1000 + EMPLOYEE_KEEP + 20), 100, 101, 100]:
        got = fs.assemble(_ctx("タクシー", employee=e), cands, tables)
        if e in want:
            assert got.num.tobytes() == want[e].num.tobytes()
    memo = cands._memo["employee_names"]
    assert len(memo) == EMPLOYEE_KEEP
    assert memo.get((tables.token(), 100))[1] and not memo.get((tables.token(), 1000))[1]
    assert (_col(want[100], "emp_name_share") > 0).any()  # the memoised part is not empty


def test_lru_memo_drops_the_least_recently_used() -> None:
    memo = LruMemo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == (1, True)  # "b" is now the least recently used
    memo.put("c", 3)
    assert memo.get("b") == (None, False) and memo.get("a") == (1, True) and len(memo) == 2
