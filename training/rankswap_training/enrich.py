"""What real tenants do, added on top of the default synthetic world (``datagen --enrich``).

Off by default (the default world, its seed and its numbers stay as they are); drawn from a
stream of its own after the default world is generated:

1. **Split items.** Per tenant, a few busy items are split mid-period into two variants that
   differ only by a qualifier (``会議費（社内）`` / ``会議費（社外）``, ``Taxi (internal)`` /
   ``Taxi (external)``); the original is deactivated, its later uses go to either variant, and
   most of their descriptions name the case (``社内打合せ``, ``顧客``, ``client``), sometimes with
   the qualifier itself, sometimes with another word for it.
2. **Typed item names.** A share of descriptions holds a word of the chosen item's name.
3. **Vendors named after items.** A few items get a vendor whose name holds a word of the item's
   name (``タクシー代ショップ``, ``Taxi Store``), which then sells a share of that item.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from rankswap_training.datagen import WorldConfig

WorldLike = dict[str, pd.DataFrame]

SPLITS_PER_TENANT = 6
SPLIT_FROM_TOP = 12
"""Split items are drawn from the tenant's most used items (with at least SPLIT_MIN_USES)."""
SPLIT_MIN_USES = 10
CASE_NAMED = 0.9
"""Share of a split item's descriptions that name the case."""
TYPED_NAME = 0.25
NAMED_VENDORS = 0.06
NAMED_VENDOR_SHARE = 0.4

QUALIFIERS = {
    "ja": (
        ("（社内）", ("社内", "社内打合せ", "社内会議")),
        ("（社外）", ("社外", "顧客", "客先")),
    ),
    "en": (
        (" (internal)", ("internal", "in-house team")),
        (" (external)", ("external", "client", "customer")),
    ),
}
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")
_CHUNKS = re.compile(r"[\s()（）\-]+")


def _col(frame: pd.DataFrame, name: str) -> int:
    """Position of a (unique) column, for ``iloc`` / ``iat``."""
    return int(list(frame.columns).index(name))


def _lang(name: str) -> str:
    return "ja" if _CJK.search(name) else "en"


def _chunks(name: str) -> list[str]:
    """Words of an item name a user might type (not bare numbers)."""
    return [c for c in _CHUNKS.split(name) if c and not c.isdigit()]


def enrich(cfg: WorldConfig, out: WorldLike, exp: pd.DataFrame, rng: np.random.Generator) -> None:
    """Apply the three enrichments to the world's frames (``out``) and expenses, in place."""
    start = datetime.combine(cfg.start, datetime.min.time())
    for tenant in out["tenants"]["id"].tolist():
        _split_items(cfg, start, tenant, out, exp, rng)
        _typed_names(tenant, out, exp, rng)
        _named_vendors(tenant, out, exp, rng)


def _split_items(
    cfg: WorldConfig,
    start: datetime,
    tenant: str,
    out: WorldLike,
    exp: pd.DataFrame,
    rng: np.random.Generator,
) -> None:
    items = out["items"]
    mine = items.loc[(items["tenant_id"] == tenant) & items["active"]]
    uses = exp.loc[exp["tenant_id"] == tenant, "item_id"].value_counts()
    active = set(mine["id"].tolist())
    busy = [int(i) for i in uses.index if uses[i] >= SPLIT_MIN_USES and i in active]
    busy = busy[:SPLIT_FROM_TOP]  # value_counts: most used first
    if not busy:
        return
    chosen = rng.choice(busy, size=min(SPLITS_PER_TENANT, len(busy)), replace=False)
    next_id = int(items["id"].max()) + 1
    new_rows: list[dict[str, Any]] = []
    for item_id in chosen.tolist():
        row = items.loc[items["id"] == item_id].iloc[0]
        split_day = int(rng.integers(max(1, cfg.days - 45), cfg.days - 3))
        split_at = start + timedelta(days=split_day)
        lang = _lang(str(row["name"]))
        ids = []
        for k, (qualifier, _) in enumerate(QUALIFIERS[lang]):
            new_rows.append(
                {
                    "id": next_id,
                    "tenant_id": tenant,
                    "code": f"{row['code']}-{'IE'[k]}",
                    "name": f"{row['name']}{qualifier}",
                    "category_id": int(row["category_id"]),
                    "created_at": split_at - timedelta(hours=1),
                    "active": True,
                }
            )
            ids.append(next_id)
            next_id += 1
        items.loc[items["id"] == item_id, "active"] = False
        later = np.flatnonzero(
            (exp["item_id"].to_numpy() == item_id)
            & (pd.to_datetime(exp["created_at"]).to_numpy() >= np.datetime64(split_at))
        )
        side = rng.integers(0, 2, size=len(later))
        exp.iloc[later, _col(exp, "item_id")] = np.asarray(ids)[side]
        named = rng.random(len(later)) < CASE_NAMED
        desc = exp["description"].to_numpy(dtype=object)[later].copy()
        for j in np.flatnonzero(named).tolist():
            words = QUALIFIERS[lang][int(side[j])][1]
            desc[j] = f"{desc[j]} {words[int(rng.integers(0, len(words)))]}"
        exp.iloc[later, _col(exp, "description")] = desc
    if new_rows:
        out["items"] = pd.concat([items, pd.DataFrame(new_rows)], ignore_index=True)


def _typed_names(tenant: str, out: WorldLike, exp: pd.DataFrame, rng: np.random.Generator) -> None:
    items = out["items"]
    chunks = {int(i): _chunks(str(n)) for i, n in zip(items["id"], items["name"], strict=True)}
    rows = np.flatnonzero(exp["tenant_id"].to_numpy() == tenant)
    rows = rows[rng.random(len(rows)) < TYPED_NAME]
    desc = exp["description"].to_numpy(dtype=object)[rows].copy()
    picks = rng.random(len(rows))
    for j, item_id in enumerate(exp["item_id"].to_numpy()[rows].tolist()):
        words = chunks.get(int(item_id)) or []
        if words:
            desc[j] = f"{desc[j]} {words[int(picks[j] * len(words))]}"
    exp.iloc[rows, _col(exp, "description")] = desc


def _named_vendors(
    tenant: str, out: WorldLike, exp: pd.DataFrame, rng: np.random.Generator
) -> None:
    items, vendors = out["items"], out["vendors"]
    mine = items.loc[(items["tenant_id"] == tenant) & items["active"]]
    k = max(1, round(NAMED_VENDORS * len(mine)))
    chosen = mine.iloc[rng.choice(len(mine), size=min(k, len(mine)), replace=False)]
    next_id = int(vendors["id"].max()) + 1
    industry_of = dict(zip(vendors["id"].tolist(), vendors["industry"].tolist(), strict=True))
    new_rows: list[dict[str, Any]] = []
    ven_col = _col(exp, "vendor_id")
    for item_id, name in zip(chosen["id"].tolist(), chosen["name"].tolist(), strict=True):
        words = _chunks(str(name))
        if not words:
            continue
        word = max(words, key=len)
        rows = np.flatnonzero(exp["item_id"].to_numpy() == item_id)
        if len(rows) == 0:
            continue
        usual = [v for v in exp["vendor_id"].to_numpy()[rows].tolist() if v is not None]
        industry = industry_of.get(int(usual[0]), "") if usual else ""
        vname = f"{word}ショップ" if _lang(word) == "ja" else f"{word} Store"
        new_rows.append({"id": next_id, "tenant_id": tenant, "name": vname, "industry": industry})
        moved = rows[rng.random(len(rows)) < NAMED_VENDOR_SHARE]
        for r in moved.tolist():
            exp.iat[r, ven_col] = next_id
        next_id += 1
    if new_rows:
        out["vendors"] = pd.concat([vendors, pd.DataFrame(new_rows)], ignore_index=True)
