"""The synthetic world: deterministic, consistent, and with new items that get adopted."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from tests.unit.conftest import SMALL

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
