"""The compiled serving arithmetic (``featurespec.kernels``, through ``compiled_fill``) gives
the numpy reference's model input bit for bit (``serving.fill_numpy``), on a generated world's
contexts with every feature exercised and on edge values; it never compiles at a call; without
numba it is unavailable, and the numpy path serves."""

from __future__ import annotations

import dataclasses
import sys
from datetime import date

import numpy as np
import pytest

from rankswap import featurespec as fs
from rankswap.productdb import ProductDB
from rankswap_training import features
from rankswap_training.features import build_tables

pytestmark = pytest.mark.timeout(240)  # the kernels' first compile in a fresh checkout


@pytest.fixture(scope="module")
def world(small_db_url: str) -> tuple[fs.Candidates, fs.FeatureTables, list[fs.RankContext]]:
    with ProductDB(small_db_url) as db:
        tenant = db.tenant_ids()[0]
        cands = db.candidates(tenant, with_names=True)
        # the department and vendor industry the product DB completes a request with (the
        # vendor name as given when the context names no vendor)
        contexts = [
            dataclasses.replace(
                ctx,
                employee_department=full.employee_department,
                vendor_industry=full.vendor_industry,
                vendor_name=full.vendor_name or ctx.vendor_name,
            )
            for ctx, full in ((c, db.make_context(c)) for c in _contexts(db, tenant, cands))
        ]
        tables = build_tables(
            features.load_history(db, before=date(2026, 3, 31)), date(2026, 3, 28)
        )
    return cands, tables, contexts


def _contexts(db: ProductDB, tenant: str, cands: fs.Candidates) -> list[fs.RankContext]:
    history = features.load_history(db, before=date(2026, 3, 31))
    e = history.expenses[history.expenses["tenant_id"] == tenant].tail(200)
    vendors = [None if v != v else int(v) for v in e["vendor_id"]]
    names = [str(x) for x in cands.names.tolist()]
    out = [
        fs.RankContext(
            tenant_id=tenant,
            employee_id=int(emp),
            vendor_id=vendor_id,
            description=str(desc),
            amount=float(amount),
            expense_date=date(2026, 3, 29),
            vendor_name=str(vendor),
        )
        for emp, vendor_id, desc, amount, vendor in zip(
            e["employee_id"], vendors, e["description"], e["amount"], e["vendor_name"], strict=True
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


def _same_bits(a: fs.ModelInput, b: fs.ModelInput) -> bool:
    return (
        np.array_equal(a.num.view(np.uint32), b.num.view(np.uint32))
        and bool((a.cat == b.cat).all())
        and (a.rows, a.item_default_rows, a.emp_item_default_rows, a.unknown_terms)
        == (b.rows, b.item_default_rows, b.emp_item_default_rows, b.unknown_terms)
        and (a.unknown_employee_rows, a.unknown_vendor_rows)
        == (b.unknown_employee_rows, b.unknown_vendor_rows)
    )


def test_the_kernels_give_the_numpy_model_input_bit_for_bit(
    world: tuple[fs.Candidates, fs.FeatureTables, list[fs.RankContext]],
) -> None:
    cands, tables, contexts = world
    fill = fs.compiled_fill()
    seen = np.zeros(len(fs.NUMERIC_FEATURES), dtype=bool)
    for ctx in contexts:
        want = fs.assemble(ctx, cands, tables)
        got = fs.assemble_with(ctx, cands, tables, fill)
        assert _same_bits(want, got), ctx
        seen |= (want.num != 0).any(axis=0)
    missing = [f for f, s in zip(fs.NUMERIC_FEATURES, seen, strict=True) if not s]
    assert not missing  # every feature was exercised, non-zero somewhere


@pytest.mark.parametrize(
    ("amount", "day"),
    [
        (float("nan"), date(2026, 3, 29)),
        (float("inf"), date(2026, 3, 29)),
        (-5.0, date(2026, 3, 29)),
        (-0.0, date(2026, 3, 29)),
        (1e30, date(1970, 1, 1)),
        (12.5, date(2100, 1, 1)),
        (0.0, date(1900, 1, 1)),
    ],
)
def test_edge_amounts_and_dates_give_the_same_bits(
    world: tuple[fs.Candidates, fs.FeatureTables, list[fs.RankContext]], amount: float, day: date
) -> None:
    """NaN and infinities through the z-scores and clamps, dates before every item and far
    after the tables (the clamps at 0 and ``DAYS_NEVER``)."""
    cands, tables, contexts = world
    fill = fs.compiled_fill()
    for ctx in contexts[::25]:
        edge = fs.RankContext(
            ctx.tenant_id,
            ctx.employee_id,
            ctx.vendor_id,
            ctx.description,
            amount,
            day,
            ctx.employee_department,
            ctx.vendor_industry,
            ctx.vendor_name,
        )
        assert _same_bits(
            fs.assemble(edge, cands, tables), fs.assemble_with(edge, cands, tables, fill)
        )


def test_the_kernels_never_compile_at_a_call(
    world: tuple[fs.Candidates, fs.FeatureTables, list[fs.RankContext]],
) -> None:
    """One signature each, compiled at import: every array argument is typed read-only of any
    layout, so the memoised (read-only) and fresh arrays, contiguous or strided, all match; a
    wrong dtype is refused instead of compiled."""
    from rankswap.featurespec import kernels

    cands, tables, contexts = world
    for ctx in contexts[:20]:
        fs.assemble_with(ctx, cands, tables, kernels.fill)
    assert len(kernels.numeric.signatures) == 1
    assert len(kernels.text.signatures) == 1
    empty_i, empty_f, empty_d = np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0)
    rest = (
        empty_i, empty_i, empty_i, empty_i, empty_i, empty_d, empty_d, empty_f, empty_d, empty_i,
        False, empty_f, empty_i, empty_d, 0, empty_i, empty_f,
        empty_i, empty_i, empty_i, empty_f, empty_i, empty_i, 0,
    )  # fmt: skip
    kernels.text(np.zeros((4, 9), dtype=np.float32), *rest)  # the compiled types: runs
    with pytest.raises(TypeError, match="No matching definition"):
        kernels.text(np.zeros((4, 9), dtype=np.float64), *rest)  # float64: refused
    assert len(kernels.text.signatures) == 1


def test_without_numba_the_kernels_are_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training image has no numba: ``compiled_fill`` says so, and the numpy path is the
    one left (``fill_numpy``)."""
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba -> ImportError
    monkeypatch.delitem(sys.modules, "rankswap.featurespec.kernels", raising=False)
    monkeypatch.delattr(sys.modules["rankswap.featurespec"], "kernels", raising=False)
    with pytest.raises(fs.KernelsUnavailable, match="numba"):
        fs.compiled_fill()
