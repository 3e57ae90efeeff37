"""The columnar engine's pipelines produce the artifacts of the implementation before it.

The reference is the pandas aggregation the pipelines used before the engine
(``tests/support/pandas_features.py``, frozen), run here, in the test, on the demo world
(``rankswap datagen``'s default world, as ``make demo`` makes it): the published feature
tables of ``features build`` and the evaluation of ``model train`` (its snapshots from the
one windowed pass, ``snapshots``) must be those the reference gives (within float tolerance;
on this data they are bit-identical)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.support import pandas_features

from rankswap import artifacts
from rankswap import featurespec as fs
from rankswap.productdb import ProductDB
from rankswap_training import columnar, datagen, features, model, pipelines, snapshots

pytestmark = pytest.mark.integration

AS_OF = date(2026, 7, 1)  # the demo's model date
TRAIN = pipelines.TrainOptions(  # a short window: the reference's snapshots cost ~5-10 s each
    holdout_days=7,
    train_days=28,
    max_train_expenses=3000,
    max_eval_expenses=400,
    candidates=(model.ModelSpec("lgbm_lambdarank", 30, 7),),
    ablation=False,
)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'product.db'}"
    db = ProductDB(url, create=True)
    try:
        datagen.write_world_streaming(db, datagen.WorldConfig())
    finally:
        db.close()
    yield url


def _reference(url: str, as_of: date, since: date | None) -> fs.FeatureTables:
    db = ProductDB(url)
    try:
        history = features.load_history(db, before=as_of, since=since)
    finally:
        db.close()
    return pandas_features.build_tables(history, as_of)


def assert_same_tables(got: fs.FeatureTables, want: fs.FeatureTables) -> None:
    assert got.as_of == want.as_of
    assert list(got.terms) == list(want.terms)
    for name, table in want.tables.items():
        mine = got.tables[name]
        assert len(table.keys) > 0, name
        np.testing.assert_array_equal(mine.keys, table.keys, err_msg=name)
        for col, values in table.columns.items():
            np.testing.assert_allclose(
                mine.columns[col], values, rtol=1e-6, atol=1e-7, err_msg=f"{name}.{col}"
            )


@pytest.mark.timeout(600)
def test_features_build_publishes_the_reference_tables(demo_db: str, tmp_path: Path) -> None:
    store = (tmp_path / "store").as_uri()
    for as_of in (date(2026, 6, 29), AS_OF):
        pipelines.run_features_build(demo_db, as_of, store)
        uri = artifacts.artifact_uri(store, "features", fs.FEATURE_SCHEMA_VERSION, as_of)
        _, folder = artifacts.fetch_artifact(uri, tmp_path / "cache", expect_kind="features")
        want = _reference(demo_db, as_of, as_of - timedelta(days=features.WINDOW_DAYS))
        assert_same_tables(fs.FeatureTables.open(folder), want)


def _quality(metrics: dict[str, Any]) -> dict[str, Any]:
    """The evaluation without the measured timings."""
    return {
        k: v
        for k, v in metrics.items()
        if k not in ("candidates", "onnx_latency_ms_per_1000", "parity_max_abs_diff")
    }


@pytest.mark.timeout(1200)
def test_model_train_evaluates_as_with_the_reference_tables(
    demo_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = pipelines.run_model_train(demo_db, AS_OF, (tmp_path / "a").as_uri(), TRAIN)

    db = ProductDB(demo_db)
    try:
        whole = features.load_history(db, before=AS_OF)
    finally:
        db.close()
    built: list[date] = []

    def reference(
        hdb: columnar.HistoryDB,
        history: features.History,
        reads: list[snapshots.Reads],
        items: object = None,
    ) -> dict[date, fs.FeatureTables]:
        # every tenant, one full pandas aggregation per snapshot, as before the windowed pass
        days = sorted({d for r in reads for d in r.as_of})
        built.extend(days)
        return {d: pandas_features.build_tables(whole, d) for d in days}

    monkeypatch.setattr(snapshots, "build", reference)
    old = pipelines.run_model_train(demo_db, AS_OF, (tmp_path / "b").as_uri(), TRAIN)
    assert len(built) == TRAIN.holdout_days + 5  # the reference built every snapshot

    got, want = _quality(engine.manifest.metrics), _quality(old.manifest.metrics)
    assert want["overall"]["queries"] == 400 and want["overall"]["ndcg@5"] > 0.5
    assert got.keys() == want.keys()
    for subset, by_metric in want.items():
        if subset in ("baselines", "ablation"):
            for name, per in by_metric.items():
                for s, m in per.items():
                    assert got[subset][name][s] == pytest.approx(m, abs=1e-9, nan_ok=True), (
                        subset,
                        name,
                        s,
                    )
        else:
            assert got[subset] == pytest.approx(by_metric, abs=1e-9, nan_ok=True), subset
