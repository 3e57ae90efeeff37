"""One ranking in-process: lookups, the documented defaults and what is counted."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from rankswap import featurespec as fs
from rankswap.productdb import ProductDB
from rankswap_ranker.bundle import Bundle
from rankswap_ranker.candidates import LazyProductDB
from rankswap_ranker.ranking import RankQuery, answer_body, item_prefixes, rank

pytestmark = pytest.mark.timeout(30)


def _query(**kw: object) -> RankQuery:
    base: dict[str, object] = dict(
        tenant_id="acme",
        employee_id=1,
        vendor_id=None,
        description="taxi",
        amount=1200.0,
        expense_date=date(2026, 11, 27),
        top_k=5,
    )
    base.update(kw)
    return RankQuery(**base)  # type: ignore[arg-type]


def test_known_employee_finds_every_pair_row(loaded: Bundle, db_url: str) -> None:
    out = rank(loaded, LazyProductDB(db_url), _query())
    assert out.candidates == 50
    assert out.stats["missing_item"] == 0
    assert out.stats["missing_emp_item"] == 0
    assert out.stats["missing_employee"] == 0
    assert set(out.timings) == {"db", "features", "inputs", "model", "topk", "serialise"}


def test_new_employee_takes_defaults_and_is_counted(loaded: Bundle, db_url: str) -> None:
    out = rank(loaded, LazyProductDB(db_url), _query(employee_id=4242))
    assert out.stats["missing_employee"] == 1
    assert out.stats["missing_emp_item"] == 50
    assert "unknown_employee_department" not in out.stats  # no department: nothing to judge


def test_new_item_takes_documented_defaults(loaded: Bundle, db_url: str, db: ProductDB) -> None:
    new_id = db.add_item("acme", code="N", name="new", category="unseen", account_code="1")
    source = LazyProductDB(db_url)
    ctx = source.make_context(
        fs.RankContext(
            "acme",
            employee_id=1,
            vendor_id=None,
            description="",
            amount=1.0,
            expense_date=date(2026, 11, 27),
        )
    )
    cands = source.candidates("acme")
    inputs = fs.assemble(ctx, cands, loaded.tables)
    row = int(list(cands.item_ids).index(new_id))
    col = {n: j for j, n in enumerate(fs.NUMERIC_FEATURES)}
    assert inputs.num[row, col["item_cnt_365d"]] == 0.0
    assert inputs.num[row, col["item_days_since_use"]] == fs.DAYS_NEVER
    assert inputs.num[row, col["emp_item_recency_rank"]] == fs.RANK_NEVER
    out = rank(loaded, source, _query(top_k=100))
    assert out.stats["missing_item"] == 1
    assert out.stats["missing_category"] == 1
    assert out.stats["unknown_category"] == 1


def test_candidate_stats_are_memoised_per_bundle(loaded: Bundle, db_url: str) -> None:
    """The candidates' part of the counts (rows without a category row, categories the encoder
    has not seen) is computed once per candidate list and bundle: a bundle whose encoder knows
    other categories counts its own, and the memo stays bounded."""
    source = LazyProductDB(db_url)
    cands = source.candidates("acme")
    first = rank(loaded, source, _query()).stats
    assert rank(loaded, source, _query()).stats == first
    category = str(cands.categories[0])
    narrow = replace(loaded, encoder_vocab={"category": frozenset({category})})
    other = int(np.count_nonzero(cands.categories != category))
    assert rank(narrow, source, _query()).stats["unknown_category"] == other
    assert rank(loaded, source, _query()).stats == first
    for _ in range(fs.DERIVED_KEEP + 2):  # short-lived bundles: the memo keeps the last few
        rank(replace(loaded, encoder_vocab={}), source, _query())
    assert source.candidates("acme") is cands
    assert len(cands._memo["derived"]) == fs.DERIVED_KEEP


def test_the_top_k_labels_come_from_the_ranked_candidates(
    loaded: Bundle, db_url: str, db: ProductDB
) -> None:
    """The response's codes and names are the ranked candidate list's (read with names for the
    text features): the same as the DB's labels, with no second read per request."""

    class NoLabels(LazyProductDB):
        def item_labels(self, item_ids: object) -> dict[int, tuple[str, str]]:
            raise AssertionError("a second read of the labels")

    out = rank(loaded, NoLabels(db_url), _query(top_k=7))
    items = json.loads(out.body)["items"]
    assert len(items) == 7
    labels = db.item_labels([item["id"] for item in items])
    assert [(i["code"], i["name"]) for i in items] == [labels[i["id"]] for i in items]


def _labelled(codes: list[object], names: list[str], categories: list[str]) -> fs.Candidates:
    n = len(names)

    def objs(values: list[object]) -> np.ndarray:
        out = np.empty(n, dtype=object)
        out[:] = values
        return out

    return fs.Candidates(
        item_ids=np.arange(10, 10 + n, dtype=np.int64),
        codes=objs(codes),
        names=objs(list(names)),
        category_ids=np.ones(n, dtype=np.int64),
        categories=objs(list(categories)),
        account_codes=objs(["6120"] * n),
        created_at=np.full(n, np.datetime64("2026-01-01T00:00:00", "s")),
    )


def test_the_body_is_json_dumps_byte_for_byte(loaded: Bundle) -> None:
    """The body is assembled from per-candidate text kept on the candidate list: it is what
    ``json.dumps(..., ensure_ascii=False)`` writes for the same answer, byte for byte, for
    labels that need escaping (quotes, backslashes, control characters, non-ASCII, a missing
    code), scores that round, are negative, tiny, NaN or infinite, an empty top-k, and again
    from the kept text."""
    names = ['"quoted" \\ back', "tab\tnew\nline\x00", "会議費（社内）", "emoji 🚕", "del \x7f é"]
    cands = _labelled(
        [None, "6120-1", "コード", "c\u2028d", ""], names, ["旅費", "a\x1fb", "", "x", "y"]
    )
    scores = np.array([0.1234567, -2.5, 1e-9, np.nan, np.inf], dtype=np.float32)
    ref = loaded.ref
    for best in ([0, 1, 2, 3, 4], [4, 2], [], [3, 0, 1], [0, 1, 2, 3, 4]):
        top = np.array(best, dtype=np.intp)
        got = answer_body('acme "t"', loaded, cands, top, scores)
        want = json.dumps(
            {
                "tenant_id": 'acme "t"',
                "items": [
                    {
                        "id": int(cands.item_ids[i]),
                        "code": str(cands.codes[i]),
                        "name": str(cands.names[i]),
                        "category": str(cands.categories[i]),
                        "score": round(float(scores[i]), 6),
                    }
                    for i in best
                ],
                "candidates": len(cands),
                "bundle_id": ref.bundle_id,
                "model_version": ref.model.version,
                "features_version": ref.features.version,
            },
            ensure_ascii=False,
        ).encode()
        assert got == want
    assert sorted(item_prefixes(cands)) == [0, 1, 2, 3, 4]  # one kept text per row shown
