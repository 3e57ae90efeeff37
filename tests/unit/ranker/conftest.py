"""Fixtures of the ranker's unit tests: a tiny published bundle and a SQLite product DB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.ranker.builders import Published, product_db, publish_bundle

from rankswap.productdb import ProductDB
from rankswap_ranker import bundle as bundles
from rankswap_ranker.settings import RankerSettings

ITEMS = 50


@pytest.fixture
def published(file_root: str, tmp_path: Path) -> Published:
    return publish_bundle(file_root, tmp_path / "src", item_ids=range(1, ITEMS + 1))


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def loaded(published: Published, cache_dir: Path) -> bundles.Bundle:
    return bundles.load(bundles.resolve(published.model_uri, published.features_uri, cache_dir))


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'product.db'}"
    db = product_db(url, {"acme": ITEMS, "empty": 0})
    db.close()
    yield url


@pytest.fixture
def db(db_url: str) -> Iterator[ProductDB]:
    handle = ProductDB(db_url)
    yield handle
    handle.close()


@pytest.fixture
def settings(tmp_path: Path, file_root: str) -> RankerSettings:
    return RankerSettings(
        allowed_roots=[file_root],
        run_dir=tmp_path / "run",
        admin_token="s3cret",
        workers=1,
    )
