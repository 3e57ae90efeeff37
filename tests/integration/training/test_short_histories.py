"""The pipelines on histories shorter than train-days + holdout-days (a new customer, a new
deployment) and on an empty one: they train on the history that exists and say so, or refuse
with one line and exit code 2 -- never a traceback (issue 15 item 7)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from rankswap import artifacts
from rankswap import featurespec as fs
from rankswap.productdb import ProductDB
from rankswap_training import cli, datagen, model, pipelines

AS_OF = date(2026, 4, 1)
# The defaults (182 training days, 28-day hold-out) with small sample sizes and one small model.
SMALL = pipelines.TrainOptions(
    max_train_expenses=400,
    max_eval_expenses=100,
    negatives=8,
    candidates=(model.ModelSpec("lgbm_lambdarank", 15, 7),),
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _world(root: Path, days: int) -> tuple[str, date]:
    """A product DB with ``days`` days of history ending the day before AS_OF; its first day."""
    url = f"sqlite:///{root / f'product-{days}.db'}"
    cfg = datagen.WorldConfig(
        seed=3, tenants=3, days=days, end=AS_OF - timedelta(days=1), scale=0.25
    )
    db = ProductDB(url, create=True)
    try:
        datagen.write_world(db, datagen.generate_world(cfg))
    finally:
        db.close()
    return url, cfg.start


def _features_argv(url: str, store: str) -> list[str]:
    return ["features", "build", "--db", url, "--as-of", str(AS_OF), "--store", store]


def _examples(url: str, store: str, cache: Path) -> int:
    return cli.main(
        ["examples", "--db", url, "--store", store, "-n", "2", "--cache-dir", str(cache)]
    )


def _models(store: Path) -> list[Path]:
    return sorted((store / "models").rglob("manifest.json")) if (store / "models").exists() else []


@dataclass(frozen=True)
class Trained:
    url: str
    first: date
    store: str
    model: artifacts.Manifest


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Trained]:
    """Features and a model published from a ``days``-day history (each built once)."""
    done: dict[int, Trained] = {}

    def get(days: int) -> Trained:
        if days not in done:
            root = tmp_path_factory.mktemp(f"history-{days}")
            url, first = _world(root, days)
            store = (root / "store").as_uri()
            assert cli.main(_features_argv(url, store)) == 0
            done[days] = Trained(
                url, first, store, pipelines.run_model_train(url, AS_OF, store, SMALL).manifest
            )
        return done[days]

    return get


@pytest.mark.parametrize("days", [60, 150])
def test_a_short_history_trains_on_what_exists(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    trained: Callable[[int], Trained],
    days: int,
) -> None:
    t = trained(days)
    features = artifacts.read_manifest(
        artifacts.artifact_uri(t.store, "features", fs.FEATURE_SCHEMA_VERSION, AS_OF)
    )
    assert features.data_window == (t.first, AS_OF - timedelta(days=1))

    m, first = t.model, t.first
    cutoff = AS_OF - timedelta(days=28)
    effective = (cutoff - first).days
    assert effective < 182
    # the effective window, in the manifest ...
    assert m.data_window == (first, AS_OF - timedelta(days=1))
    assert (m.params["train_days"], m.params["train_days_effective"]) == (182, effective)
    # ... and in the report
    _, local = artifacts.fetch_artifact(
        artifacts.artifact_uri(t.store, "model", pipelines.MODEL_NAME, AS_OF), tmp_path / "cache"
    )
    report = (local / "report.md").read_text(encoding="utf-8")
    window = f"{first} .. {cutoff - timedelta(days=1)} ({effective} days; 182 asked"
    assert f"**training window**: {window}, the history starts {first})" in report
    assert m.metrics["overall"]["queries"] > 0

    capsys.readouterr()
    assert _examples(t.url, t.store, tmp_path / "cache") == 0
    assert m.version in capsys.readouterr().out


def test_a_30_day_history_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, first = _world(tmp_path, 30)
    store_dir = tmp_path / "store"
    store = store_dir.as_uri()
    assert cli.main(_features_argv(url, store)) == 0  # features need no minimum history

    capsys.readouterr()
    code = cli.main(["model", "train", "--db", url, "--as-of", str(AS_OF), "--store", store])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert err == (
        f"error: the history starts {first}: only 2 days before the 28-day hold-out "
        "(2026-03-04 .. 2026-03-31), fewer than 7; use a smaller --holdout-days or a later --as-of"
    )
    assert _models(store_dir) == []

    # no model yet: examples says so in one line too
    assert _examples(url, store, tmp_path / "cache") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: artifact store: ") and "\n" not in err, err


def test_examples_on_an_empty_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trained: Callable[[int], Trained]
) -> None:
    t = trained(60)
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    ProductDB(empty, create=True).create_schema()
    capsys.readouterr()
    assert _examples(empty, t.store, tmp_path / "cache") == 2
    assert capsys.readouterr().err.strip() == "error: no expenses to rank"
