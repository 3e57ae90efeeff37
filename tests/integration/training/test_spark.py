"""The feature definitions on Spark (pyspark in local mode, a real JVM) give DuckDB's tables.

One SparkSession for the module (``local[2]``, no UI, 2 shuffle partitions, a 1 GB driver),
stopped at the end. Java 17+ comes from ``make java`` (scripts/ensure-java.sh), a
prerequisite of ``make test-fast``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
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


@pytest.fixture(scope="module")
def hdb(world_db: str) -> Iterator[columnar.HistoryDB]:
    db = ProductDB(world_db)
    try:
        history = columnar.HistoryDB.from_product_db(db, before=date(2026, 4, 1))
    finally:
        db.close()
    with history:
        yield history


@pytest.fixture(scope="module")
def inputs(hdb: columnar.HistoryDB, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole history's inputs as Parquet (what an export of the product DB would hold)."""
    root = tmp_path_factory.mktemp("spark-inputs")
    hdb.export_inputs(root)
    return root


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
def test_spark_tables_equal_duckdb(
    spark: SparkSession, hdb: columnar.HistoryDB, inputs: Path
) -> None:
    assert int(hdb.days().max()) >= fs.to_day(AS_OF)  # later expenses are there to ignore
    want = hdb.build_tables(AS_OF)
    got = sparkengine.build_tables(spark, sparkengine.input_paths(str(inputs)), AS_OF)
    assert_same_tables(got, want)
    # the engine's temporary tables and the inputs are gone from the session
    assert [t.name for t in spark.catalog.listTables()] == []


@pytest.mark.timeout(300)
def test_features_build_engine_spark_publishes_the_same_artifact(
    spark: SparkSession, world_db: str, inputs: Path, tmp_path: Path
) -> None:
    sources = {
        "duckdb": ["--db", world_db],
        "spark": ["--db", world_db, "--engine", "spark"],
        "spark-inputs": ["--spark-inputs", inputs.as_uri(), "--engine", "spark"],
    }
    stores = {engine: (tmp_path / engine).as_uri() for engine in sources}
    for engine, store in stores.items():
        argv = ["features", "build", "--as-of", AS_OF.isoformat(), "--store", store]
        assert cli.main([*argv, *sources[engine]]) == 0
    manifests = {
        engine: artifacts.read_manifest(
            artifacts.artifact_uri(store, "features", fs.FEATURE_SCHEMA_VERSION, "latest")
        )
        for engine, store in stores.items()
    }
    duck = manifests["duckdb"]
    for spk in (manifests["spark"], manifests["spark-inputs"]):
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
    want = fs.FeatureTables.open(folders["duckdb"])
    assert_same_tables(fs.FeatureTables.open(folders["spark"]), want)
    assert_same_tables(fs.FeatureTables.open(folders["spark-inputs"]), want)
    # the session the command found active is left running for its owner
    assert SparkSession.getActiveSession() is spark


@pytest.mark.timeout(120)
def test_bad_spark_inputs(
    spark: SparkSession,
    inputs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = tmp_path / "store"
    argv = ["features", "build", "--as-of", AS_OF.isoformat(), "--store", store.as_uri()]
    argv += ["--engine", "spark", "--spark-inputs"]
    assert cli.main([*argv, str(tmp_path / "absent")]) == cli.EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Spark input exp at ") and len(err.splitlines()) == 1
    # an exp without its description ids
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("desc_term", "item_term"):
        (partial / f"{name}.parquet").symlink_to(inputs / f"{name}.parquet")
    pq.write_table(pa.table({"id": [1], "day": [20_000]}), partial / "exp.parquet")
    assert cli.main([*argv, str(partial)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert "Spark input exp" in err and "lacks columns ['amount', 'category_id'" in err
    assert not store.exists()
