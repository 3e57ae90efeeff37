"""The feature definitions on Spark (pyspark in local mode, a real JVM) give DuckDB's tables.

One SparkSession for the module (``local[2]``, no UI, 2 shuffle partitions, a 1 GB driver),
stopped at the end. Java 17+ comes from ``make java`` (scripts/ensure-java.sh), a
prerequisite of ``make test-fast``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import SparkSession

from rankswap import artifacts
from rankswap import featurespec as fs
from rankswap.productdb import ProductDB
from rankswap_training import cli, columnar, datagen, sparkengine

pytestmark = pytest.mark.integration

# a mid-history date: expenses on and after it exist and must not count
AS_OF = date(2026, 2, 20)
WORLD = datagen.WorldConfig(seed=5, tenants=3, days=150, end=date(2026, 3, 31), scale=0.25)
# the columns that hold counts, days and ranks: equal exactly
INTEGER_COLUMNS = {"cnt_30d", "cnt_90d", "cnt_365d", "n_users_90d", "last_day", "recency_rank"}


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    sparkengine.check_available()
    with sparkengine.session("local[2]") as s:
        yield s


@pytest.fixture(scope="module")
def world_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('spark-world') / 'product.db'}"
    db = ProductDB(url, create=True)
    try:
        datagen.write_world_streaming(db, WORLD)
    finally:
        db.close()
    return url


def assert_same_tables(got: fs.FeatureTables, want: fs.FeatureTables) -> None:
    """Same as-of, vocabulary and keys; integers exactly, fractions within 1e-6 relative."""
    assert got.as_of == want.as_of
    assert list(got.terms) == list(want.terms) and len(want.terms) > 0
    assert set(got.tables) == set(want.tables) == set(fs.TABLES)
    for name, table in want.tables.items():
        mine = got.tables[name]
        assert len(table.keys) > 0, name
        np.testing.assert_array_equal(mine.keys, table.keys, err_msg=name)
        for col, values in table.columns.items():
            if col in INTEGER_COLUMNS:
                np.testing.assert_array_equal(mine.columns[col], values, err_msg=f"{name}.{col}")
            else:
                np.testing.assert_allclose(
                    mine.columns[col], values, rtol=1e-6, atol=1e-9, err_msg=f"{name}.{col}"
                )


@pytest.mark.timeout(300)
def test_spark_tables_equal_duckdb(spark: SparkSession, world_db: str, tmp_path: Path) -> None:
    db = ProductDB(world_db)
    try:
        hdb = columnar.HistoryDB.from_product_db(db, before=date(2026, 4, 1))
    finally:
        db.close()
    with hdb:
        assert int(hdb.days().max()) >= fs.to_day(AS_OF)  # later expenses are there to ignore
        want = hdb.build_tables(AS_OF)
        paths = {k: str(v) for k, v in hdb.export_inputs(tmp_path / "inputs").items()}
    got = sparkengine.build_tables(spark, paths, AS_OF)
    assert_same_tables(got, want)
    # the engine's temporary tables and the inputs are gone from the session
    assert [t.name for t in spark.catalog.listTables()] == []


@pytest.mark.timeout(300)
def test_features_build_engine_spark_publishes_the_same_artifact(
    spark: SparkSession, world_db: str, tmp_path: Path
) -> None:
    stores = {engine: (tmp_path / engine).as_uri() for engine in ("duckdb", "spark")}
    for engine, store in stores.items():
        argv = ["features", "build", "--db", world_db, "--as-of", AS_OF.isoformat()]
        assert cli.main([*argv, "--store", store, "--engine", engine]) == 0
    manifests = {
        engine: artifacts.read_manifest(
            artifacts.artifact_uri(store, "features", fs.FEATURE_SCHEMA_VERSION, "latest")
        )
        for engine, store in stores.items()
    }
    duck, spk = manifests["duckdb"], manifests["spark"]
    assert spk.as_of == duck.as_of == AS_OF
    assert set(spk.files) == set(duck.files)
    assert spk.extra == duck.extra  # row counts and bytes
    assert spk.data_window == duck.data_window
    folders = {}
    for engine, store in stores.items():
        uri = artifacts.artifact_uri(store, "features", fs.FEATURE_SCHEMA_VERSION, AS_OF)
        _, folders[engine] = artifacts.fetch_artifact(
            uri, tmp_path / f"cache-{engine}", expect_kind="features"
        )
    assert_same_tables(
        fs.FeatureTables.open(folders["spark"]), fs.FeatureTables.open(folders["duckdb"])
    )
    # the session the command found active is left running for its owner
    assert SparkSession.getActiveSession() is spark
