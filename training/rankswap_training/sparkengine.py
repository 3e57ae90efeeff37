"""The feature definitions on Spark SQL: ``features build --engine spark``.

The statements are ``featuresql``'s, the same text DuckDB runs (no rewriting: it is written in
the SQL both engines read alike). The three inputs (``exp``,
``desc_term``, ``item_term``) are Parquet: ``load_inputs`` makes them Spark tables from any path
Spark reads (a local folder, ``s3a://``, ``hdfs://``). ``build_from_history`` stages them from
a ``HistoryDB`` (which read the product DB in Arrow batches and tokenised each distinct
description once with ``featurespec.tokenize``) and builds the tables; the result is the same
``FeatureTables`` as DuckDB's, published by the same code. ``build_from_inputs`` starts
from Parquet inputs already on storage the executors read (an export of the product DB: the
way beyond one machine, docs/DATA.md).

``session(master)`` starts a SparkSession (``local[2]`` by default: this machine; a cluster's
master URL, e.g. ``spark://host:7077``, to run beyond it) after checking that pyspark and a
Java 17+ are there (``EngineUnavailable`` with what to install otherwise). A session already
active in this process (a notebook's, the tests') is used and left running.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rankswap import featurespec as fs
from rankswap_training import featuresql
from rankswap_training.errors import EngineUnavailable, UpstreamError
from rankswap_training.features import WINDOW_DAYS, require_first_day

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from rankswap_training.columnar import HistoryDB

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[2]"
MIN_JAVA = 17
JVM_DIRS = (Path("/usr/lib/jvm"),)
INSTALL_HINT = "make java (Debian: apt-get install openjdk-17-jre-headless)"
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def java_home(environ: Mapping[str, str] | None = None) -> Path:
    """The Java installation Spark will run on: ``JAVA_HOME`` if set (it must hold
    ``bin/java``), else the ``java`` on ``PATH``, else the newest under /usr/lib/jvm; at least
    Java 17. ``EngineUnavailable`` says what is missing."""
    env = os.environ if environ is None else environ
    if env.get("JAVA_HOME"):
        home = Path(env["JAVA_HOME"])
        if not os.access(home / "bin" / "java", os.X_OK):
            raise EngineUnavailable(
                f"JAVA_HOME={home} has no bin/java; point it at a Java {MIN_JAVA}+ "
                f"installation or unset it ({INSTALL_HINT})"
            )
    else:
        on_path = shutil.which("java", path=env.get("PATH"))
        if on_path is not None:
            home = Path(on_path).resolve().parent.parent
        else:
            found = sorted(
                p for d in JVM_DIRS for p in d.glob("*/bin/java") if os.access(p, os.X_OK)
            )
            if not found:
                raise EngineUnavailable(
                    f"--engine spark needs Java {MIN_JAVA}+ and none was found (JAVA_HOME unset, "
                    f"no java on PATH, nothing in /usr/lib/jvm): {INSTALL_HINT}"
                )
            home = max(found, key=java_major).parent.parent
    major = java_major(home / "bin" / "java")
    if major < MIN_JAVA:
        raise EngineUnavailable(
            f"{home / 'bin' / 'java'} is Java {major}; Spark 4 needs Java {MIN_JAVA}+ "
            f"({INSTALL_HINT}, then JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64)"
        )
    return home


def java_major(java: Path) -> int:
    """The major version ``java -version`` reports (``1.8`` reads as 8)."""
    try:
        done = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineUnavailable(f"{java} -version failed: {exc}") from exc
    m = _VERSION.search(done.stderr + done.stdout)
    if done.returncode != 0 or m is None:
        first = (done.stderr or done.stdout).strip().splitlines()[:1]
        raise EngineUnavailable(f"{java} -version did not report a version: {first}")
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def check_available() -> Path:
    """pyspark importable and a Java 17+ found (its home); ``EngineUnavailable`` otherwise."""
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise EngineUnavailable(
            f"--engine spark needs pyspark, which is not installed ({exc}): "
            "pip install 'rankswap[spark]'"
        ) from exc
    return java_home()


@contextmanager
def session(master: str = DEFAULT_MASTER) -> Iterator[SparkSession]:
    """A SparkSession on ``master`` (module docstring), stopped at the end unless it was
    already active."""
    home = check_available()
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    os.environ["JAVA_HOME"] = str(home)  # what pyspark's launcher runs
    try:
        spark = builder(master).getOrCreate()
    except PySparkException as exc:
        raise EngineUnavailable(f"Spark did not start on {master} with {home}: {exc}") from exc
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()


def builder(master: str, *, shuffle_partitions: int | None = None) -> Any:
    """The session's settings: no UI, UTC, Arrow transfers; ``local[...]`` gets few shuffle
    partitions (the default 200 is for a cluster) and a 1 GB driver."""
    from pyspark.sql import SparkSession

    b = (
        SparkSession.builder.master(master)
        .appName("rankswap-features")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    if master.startswith("local"):
        b = b.config("spark.driver.memory", "1g").config(
            "spark.sql.shuffle.partitions", str(shuffle_partitions or 2)
        )
    elif shuffle_partitions is not None:
        b = b.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    return b


class SparkEngine:
    """``featuresql.Engine`` on a SparkSession: temporary tables are cached temp views."""

    def __init__(self, spark: SparkSession):
        self.spark = spark
        self._cached: dict[str, DataFrame] = {}

    def _sql(self, sql: str) -> DataFrame:
        return self.spark.sql(sql)

    def temp(self, name: str, sql: str) -> None:
        self._view(name, self._sql(sql))

    def arrow(self, sql: str) -> pa.Table:
        table: pa.Table = self._sql(sql).toArrow()
        return table

    def register(self, name: str, table: pa.Table) -> None:
        self._view(name, self.spark.createDataFrame(table))

    def drop(self, name: str) -> None:
        df = self._cached.pop(name, None)
        if df is not None:
            df.unpersist()
        self.spark.catalog.dropTempView(name)

    def _view(self, name: str, df: DataFrame) -> None:
        self.drop(name)
        df = df.cache()
        df.createOrReplaceTempView(name)
        self._cached[name] = df


def input_paths(root: str) -> dict[str, str]:
    """``root``'s three inputs: ``<root>/exp.parquet``, ``desc_term.parquet``,
    ``item_term.parquet`` (files or folders of part files, as Spark writes them)."""
    return {name: f"{root.rstrip('/')}/{name}.parquet" for name in featuresql.INPUTS}


def load_inputs(spark: SparkSession, paths: Mapping[str, str]) -> None:
    """``exp``, ``desc_term`` and ``item_term`` as Spark temp views from Parquet at ``paths``
    (any path Spark reads); ``UpstreamError`` when one is unreadable or lacks a column."""
    from pyspark.errors import PySparkException

    for name in featuresql.INPUTS:
        try:
            df = spark.read.parquet(paths[name])
        except PySparkException as exc:
            raise UpstreamError(f"Spark input {name} at {paths[name]}: {_first_line(exc)}") from exc
        lacking = sorted(set(featuresql.INPUTS[name]) - set(df.columns))
        if lacking:
            raise UpstreamError(f"Spark input {name} at {paths[name]} lacks columns {lacking}")
        df.createOrReplaceTempView(name)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def build_tables(spark: SparkSession, paths: Mapping[str, str], as_of: date) -> fs.FeatureTables:
    """The feature tables as of ``as_of`` from the Parquet inputs at ``paths``."""
    load_inputs(spark, paths)
    try:
        return featuresql.build_tables(SparkEngine(spark), as_of)
    finally:
        for name in featuresql.INPUTS:
            spark.catalog.dropTempView(name)


def build_from_inputs(
    root: str, as_of: date, *, master: str = DEFAULT_MASTER
) -> tuple[date, fs.FeatureTables]:
    """The first expense day of the window and the feature tables as of ``as_of`` from the
    Parquet inputs under ``root`` (``input_paths``), on a session on ``master``."""
    end = fs.to_day(as_of)
    paths = input_paths(root)
    with session(master) as spark:
        load_inputs(spark, paths)
        try:
            row = spark.sql(
                f"SELECT min(day) FROM exp WHERE day < {end} AND day >= {end - WINDOW_DAYS}"
            ).first()
        finally:
            for name in featuresql.INPUTS:
                spark.catalog.dropTempView(name)
        first_day = None if row is None or row[0] is None else int(row[0])
        first = require_first_day(
            None if first_day is None else date.fromordinal(first_day + fs.EPOCH_ORDINAL), as_of
        )
        return first, build_tables(spark, paths, as_of)


def build_from_history(
    hdb: HistoryDB, as_of: date, *, master: str = DEFAULT_MASTER
) -> fs.FeatureTables:
    """The feature tables as of ``as_of`` of ``hdb``'s history, computed by Spark: the inputs
    staged as Parquet in a temporary folder, then ``build_tables``."""
    with tempfile.TemporaryDirectory(prefix="rankswap-spark-") as tmp:
        paths = {k: str(v) for k, v in hdb.export_inputs(Path(tmp)).items()}
        with session(master) as spark:
            return build_tables(spark, paths, as_of)
