"""Small worlds for the unit tests (built once per session, SQLite in a temp dir)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from rankswap.productdb import ProductDB
from rankswap_training import datagen

SMALL = datagen.WorldConfig(seed=11, tenants=3, days=120, end=date(2026, 3, 31), scale=0.2)


@pytest.fixture(scope="session")
def small_world() -> datagen.World:
    return datagen.generate_world(SMALL)


@pytest.fixture(scope="session")
def small_db_url(tmp_path_factory: pytest.TempPathFactory, small_world: datagen.World) -> str:
    path: Path = tmp_path_factory.mktemp("productdb") / "product.db"
    url = f"sqlite:///{path}"
    db = ProductDB(url, create=True)
    try:
        datagen.write_world(db, small_world)
    finally:
        db.close()
    return url
