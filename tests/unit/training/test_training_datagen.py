"""The synthetic world: deterministic, consistent, and with new items that get adopted."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.unit.conftest import SMALL

from rankswap.productdb import ProductDB
from rankswap_training import datagen


def test_same_seed_same_world(small_world: datagen.World) -> None:
    again = datagen.generate_world(SMALL)
    for name, frame in small_world.frames().items():
        pd.testing.assert_frame_equal(frame, again.frames()[name], obj=name)


def test_other_seed_other_world(small_world: datagen.World) -> None:
    other = datagen.generate_world(replace(SMALL, seed=SMALL.seed + 1))
    assert not other.expenses["item_id"].equals(small_world.expenses["item_id"])


def test_expenses_reference_their_tenants_items(small_world: datagen.World) -> None:
    exp = small_world.expenses
    items = small_world.items.set_index("id")
    assert (items.loc[exp["item_id"], "tenant_id"].to_numpy() == exp["tenant_id"].to_numpy()).all()
    emps = small_world.employees.set_index("id")
    assert (
        emps.loc[exp["employee_id"], "tenant_id"].to_numpy() == exp["tenant_id"].to_numpy()
    ).all()
    # every chosen item existed when the expense was filed
    created = pd.to_datetime(items.loc[exp["item_id"], "created_at"]).to_numpy()
    assert (created <= pd.to_datetime(exp["created_at"]).to_numpy()).all()
    assert exp["id"].is_monotonic_increasing and exp["expense_date"].is_monotonic_increasing


def test_items_appear_during_history_and_get_chosen(small_world: datagen.World) -> None:
    start = pd.Timestamp(SMALL.start)
    items = small_world.items
    new_ids = items.loc[pd.to_datetime(items["created_at"]) > start + pd.Timedelta(days=60), "id"]
    assert len(new_ids) > 0
    chosen = small_world.expenses["item_id"].isin(new_ids)
    assert chosen.sum() > 0  # new items are adopted, not just created


def test_catalogue_sizes_range_from_dozens_to_a_thousand() -> None:
    world = datagen.generate_world(datagen.WorldConfig(seed=3, tenants=6))
    sizes = world.items.groupby("tenant_id").size()
    assert sizes.min() < 60
    assert sizes.max() > 1000
    names = " ".join(world.items["name"])
    assert "タクシー" in names and "Taxi" in names  # Japanese and English catalogues


def test_some_expenses_have_no_vendor(small_world: datagen.World) -> None:
    vendor = small_world.expenses["vendor_id"]
    assert vendor.isna().any() and vendor.notna().mean() > 0.9


def test_rejects_an_empty_world() -> None:
    with pytest.raises(ValueError):
        datagen.generate_world(replace(SMALL, tenants=0))


def test_amounts_follow_items(small_world: datagen.World) -> None:
    exp = small_world.expenses
    spread = exp.groupby("item_id")["amount"].apply(lambda a: np.log(a).std())
    overall = np.log(exp["amount"]).std()
    assert spread.median() < overall / 2


DEMO_WORLD_SHA256 = "748a8d2f2482bc06a096660b4b18791837e42e2c8c0a1b5bb5fc78c30aec71f0"
"""The default world (seed 7, ``make demo``) as generated before ``--enrich`` existed."""


def test_the_default_world_is_unchanged_by_the_enrich_option() -> None:
    import hashlib

    world = datagen.generate_world(datagen.WorldConfig())
    digest = hashlib.sha256()
    for name, frame in world.frames().items():
        digest.update(name.encode())
        digest.update(frame.to_csv(index=False).encode())
    assert (len(world.items), len(world.expenses)) == (2702, 48752)
    assert digest.hexdigest() == DEMO_WORLD_SHA256


@pytest.fixture(scope="module")
def enriched() -> datagen.World:
    return datagen.generate_world(replace(SMALL, enrich=True))


def test_enriched_world_splits_items_into_qualified_siblings(enriched: datagen.World) -> None:
    items, exp = enriched.items, enriched.expenses
    split = items.loc[
        items["name"].str.contains("（社内）|（社外）| \\(internal\\)| \\(external\\)")
    ]
    assert len(split) >= 4 and len(split) % 2 == 0
    origin = split["tenant_id"] + "/" + split["code"].str[:-2]  # a pair: <original code>-I / -E
    for key in origin.unique():
        pair = split.loc[origin == key]
        original = items.loc[(items["tenant_id"] + "/" + items["code"]) == key].iloc[0]
        assert len(pair) == 2 and not original["active"] and pair["active"].all()
        assert (pair["category_id"] == original["category_id"]).all()
        assert set(pair["name"].str.replace(str(original["name"]), "", regex=False)) in (
            {"（社内）", "（社外）"},
            {" (internal)", " (external)"},
        )
        used = exp.loc[exp["item_id"].isin(pair["id"])]  # none yet for a split days ago
        after = pd.to_datetime(used["created_at"]) >= pd.to_datetime(pair["created_at"]).min()
        assert after.all()  # filed after the split items existed
    # most descriptions of the split items' uses name the case (90 % drawn; over all pairs, as
    # a pair split a few days before the end has only a handful of uses)
    used = exp.loc[exp["item_id"].isin(split["id"])]
    assert len(used) >= 20
    words = "社内|社外|顧客|客先|internal|in-house|external|client|customer"
    assert used["description"].str.contains(words).mean() >= 0.8


def test_enriched_world_types_item_names_and_names_vendors_after_items(
    small_world: datagen.World, enriched: datagen.World
) -> None:
    def typed_share(world: datagen.World) -> float:
        names = world.items.set_index("id")["name"]
        base = names.str.replace("（.*?）|\\(.*?\\)", "", regex=True).str.split().str[-1]
        chosen = base.loc[world.expenses["item_id"]].to_numpy()
        desc = world.expenses["description"].to_numpy()
        return float(np.mean([str(b) in str(d) for b, d in zip(chosen, desc, strict=True)]))

    assert typed_share(enriched) > typed_share(small_world) + 0.1
    added = ~enriched.vendors["id"].isin(small_world.vendors["id"])
    named = enriched.vendors.loc[added]
    assert len(named) >= 3 and named["name"].str.contains("ショップ$| Store$").all()
    sold = enriched.expenses.loc[enriched.expenses["vendor_id"].isin(named["id"])]
    assert len(sold) > 0
    # the vendor's name holds a word of the item it sells
    ven_name = named.set_index("id")["name"]
    item_name = enriched.items.set_index("id")["name"]
    word = ven_name.loc[sold["vendor_id"].astype(int)].str.replace(
        "ショップ$| Store$", "", regex=True
    )
    assert all(w in str(n) for w, n in zip(word, item_name.loc[sold["item_id"]], strict=True))


def _dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every stored value with its SQLite storage class, table by table, in id order."""
    con = sqlite3.connect(path)
    try:
        out = {}
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({name})")]
            picks = ", ".join(f"{c}, typeof({c})" for c in cols)
            out[name] = con.execute(f"SELECT {picks} FROM {name} ORDER BY id").fetchall()
        return out
    finally:
        con.close()


def test_the_streaming_writer_stores_the_rows_the_whole_world_writer_stores(
    tmp_path: Path,
) -> None:
    cfg = replace(SMALL, tenants=8)  # beyond the six profiles: the smaller copies too
    dumps = []
    for name in ("whole", "stream"):
        db = ProductDB(f"sqlite:///{tmp_path / name}.db", create=True)
        try:
            if name == "whole":
                datagen.write_world(db, datagen.generate_world(cfg))
            else:
                datagen.write_world_streaming(db, cfg)
        finally:
            db.close()
        dumps.append(_dump(tmp_path / f"{name}.db"))
    whole, stream = dumps
    assert set(whole) >= {"expenses", "items", "tenants"} and len(whole["expenses"]) > 1000
    assert whole == stream


def test_the_streamed_world_is_the_generated_world_tenant_by_tenant() -> None:
    world = datagen.generate_world(SMALL)
    parts = list(datagen.stream_world(SMALL))
    assert len(parts) == SMALL.tenants
    exp = pd.concat([p["expenses"] for p in parts]).sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(exp, world.expenses)
    items = pd.concat([p["items"] for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(items, world.items)


def test_the_enriched_world_is_not_streamed() -> None:
    with pytest.raises(ValueError, match="not streamed"):
        next(datagen.stream_world(replace(SMALL, enrich=True)))
