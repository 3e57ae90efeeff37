"""The compiled text-feature kernel of the benchmark (``bench_ranker.textkernel``) gives the
serving path's model input bit for bit: the same contexts as the serving-vs-training test of
``test_itemtext``, through both text paths."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from rankswap import featurespec as fs
from rankswap.productdb import ProductDB
from rankswap_dev.bench_ranker import textkernel
from rankswap_training import features
from rankswap_training.features import build_tables

pytestmark = pytest.mark.timeout(180)  # the kernel's first compile


def _contexts(db: ProductDB, tenant: str, cands: fs.Candidates) -> list[fs.RankContext]:
    history = features.load_history(db, before=date(2026, 3, 31))
    e = history.expenses[history.expenses["tenant_id"] == tenant].tail(200)
    names = [str(x) for x in cands.names.tolist()]
    out = [
        fs.RankContext(
            tenant_id=tenant,
            employee_id=int(emp),
            vendor_id=None,
            description=str(desc),
            amount=float(amount),
            expense_date=date(2026, 3, 29),
            vendor_name=str(vendor),
        )
        for emp, desc, amount, vendor in zip(
            e["employee_id"], e["description"], e["amount"], e["vendor_name"], strict=True
        )
    ]
    # descriptions and vendor names that are item names: every feature non-zero somewhere
    out += [
        fs.RankContext(
            tenant_id=tenant,
            employee_id=int(e["employee_id"].iloc[k]),
            vendor_id=None,
            description=f"{names[k]} {names[k + 1]} {names[k + 2]}",
            amount=100.0,
            expense_date=date(2026, 3, 29),
            vendor_name=names[k + 3],
        )
        for k in range(0, 40, 4)
    ]
    holders: dict[tuple[int, str], int] = {}
    for cat, code, name in zip(cands.category_ids, cands.codes, cands.names, strict=True):
        for term in fs.item_terms(str(code), str(name)):
            holders[int(cat), term] = holders.get((int(cat), term), 0) + 1
    alone = [t for (_, t), c in holders.items() if c == 1 and t in fs.tokenize(t)][:5]
    out += [  # terms one item holds alone in its category: name_alone_match
        fs.RankContext(
            tenant, int(e["employee_id"].iloc[0]), None, " ".join(alone), 1.0, date(2026, 3, 29)
        ),
        fs.RankContext(tenant, None, None, names[0], 1.0, date(2026, 3, 29)),
        fs.RankContext(tenant, 10**6, None, "", 1.0, date(2026, 3, 29)),
    ]
    return out


def test_the_kernel_gives_the_numpy_paths_model_input_bit_for_bit(small_db_url: str) -> None:
    with ProductDB(small_db_url) as db:
        tenant = db.tenant_ids()[0]
        cands = db.candidates(tenant, with_names=True)
        contexts = _contexts(db, tenant, cands)
        tables = build_tables(
            features.load_history(db, before=date(2026, 3, 31)), date(2026, 3, 28)
        )
    cols = [fs.NUMERIC_FEATURES.index(f) for f in fs.ITEM_TEXT_FEATURES]
    seen = np.zeros(len(cols), dtype=bool)
    for ctx in contexts:
        want = fs.assemble(ctx, cands, tables).num
        restore = textkernel.with_text_path(textkernel.one_context)
        try:
            got = fs.assemble(ctx, cands, tables).num
        finally:
            restore()
        assert np.array_equal(want.view(np.uint32), got.view(np.uint32)), ctx
        seen |= (want[:, cols] != 0).any(axis=0)
    assert seen.all()  # every text feature was exercised, non-zero somewhere
    assert textkernel._SCRATCH  # and the kernel ran
