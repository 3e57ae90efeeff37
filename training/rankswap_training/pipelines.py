"""The pipelines behind the CLI: datagen, daily features, weekly model, examples.

Each function does its I/O through ``ProductDB`` and ``rankswap.artifacts``, maps their errors
to ``TrainingError`` subclasses (one-line messages), and publishes only after every check
passed: a failure leaves nothing (partial) in the store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from rankswap import artifacts
from rankswap import featurespec as fs
from rankswap.artifacts import model_contract as contract
from rankswap.productdb import ProductDB, ProductDBError, schema
from rankswap_training import (
    columnar,
    datagen,
    dataset,
    evaluate,
    features,
    model,
    report,
    snapshots,
    sparkengine,
)
from rankswap_training.errors import (
    EngineUnavailable,
    NoData,
    SchemaMismatch,
    TrainingError,
    UpstreamError,
)

log = logging.getLogger(__name__)

MODEL_NAME = "line-items"

Engine = Literal["duckdb", "spark"]
ENGINES: tuple[Engine, ...] = ("duckdb", "spark")


@contextlib.contextmanager
def upstream_errors() -> Iterator[None]:
    """Map product DB and artifact store errors to ``UpstreamError`` (one line)."""
    try:
        yield
    except ProductDBError as exc:
        raise UpstreamError(str(exc)) from exc
    except artifacts.SchemaMismatch as exc:
        raise SchemaMismatch(str(exc)) from exc
    except artifacts.ArtifactError as exc:
        raise UpstreamError(f"artifact store: {exc}") from exc


@contextlib.contextmanager
def _step(what: str) -> Iterator[None]:
    t0 = time.perf_counter()
    log.info("%s ...", what)
    yield
    log.info("%s: done in %.1fs", what, time.perf_counter() - t0)


# ---------------------------------------------------------------------------- datagen


def run_datagen(db_url: str, cfg: datagen.WorldConfig) -> dict[str, int]:
    with upstream_errors():
        db = ProductDB(db_url, create=True)
        try:
            what = f"world (seed {cfg.seed}, {cfg.tenants} tenants, {cfg.days} d)"
            if not cfg.enrich:  # one tenant at a time, the same rows (datagen.stream_world)
                with _step(f"generating and writing {what} to {db.url}"):
                    return datagen.write_world_streaming(db, cfg)
            with _step(f"generating {what}"):
                world = datagen.generate_world(cfg)
            with _step(f"writing to {db.url}"):
                return datagen.write_world(db, world)
        finally:
            db.close()


# ---------------------------------------------------------------------------- features


def run_features_build(
    db_url: str | None,
    as_of: date,
    store: str,
    *,
    force: bool = False,
    move_latest_backwards: bool = False,
    engine: Engine = "duckdb",
    spark_master: str = sparkengine.DEFAULT_MASTER,
    spark_inputs: str | None = None,
) -> artifacts.Publication:
    """Build the feature tables as of ``as_of`` and publish them (kind=features).

    ``engine``: DuckDB in this process, or Spark SQL on ``spark_master`` (the same
    definitions, ``featuresql``). With Spark the history is read from ``db_url`` and tokenised
    as for DuckDB, then handed to Spark as Parquet; or, with ``spark_inputs`` (a folder or URI
    Spark reads, holding ``exp``, ``desc_term`` and ``item_term`` as Parquet: ``sparkengine``)
    no product DB is read here at all. ``latest/`` moves only forward unless
    ``move_latest_backwards`` (see publish_artifact)."""
    if (db_url is None) == (spark_inputs is None):
        raise EngineUnavailable("give the product DB (--db) or Spark's inputs (--spark-inputs)")
    if spark_inputs is not None and engine != "spark":
        raise EngineUnavailable("--spark-inputs are read by Spark: add --engine spark")
    if engine == "spark":
        sparkengine.check_available()  # missing pyspark or Java fails before any work
    with upstream_errors():
        artifacts.parse_uri(store)  # a bad store URI fails before any work
        if spark_inputs is not None:
            with _step(f"building feature tables as of {as_of} on Spark from {spark_inputs}"):
                first, tables = sparkengine.build_from_inputs(
                    spark_inputs, as_of, master=spark_master
                )
        else:
            assert db_url is not None
            db = ProductDB(db_url)
            try:
                with _step(f"loading history before {as_of}"):
                    since = as_of - timedelta(days=features.WINDOW_DAYS)
                    hdb = columnar.HistoryDB.from_product_db(db, before=as_of, since=since)
            finally:
                db.close()
            with hdb:
                first = features.require_first_day(hdb.first_day, as_of)
                with _step(f"building feature tables as of {as_of} ({hdb.count():,} expenses)"):
                    if engine == "spark":
                        tables = sparkengine.build_from_history(hdb, as_of, master=spark_master)
                    else:
                        tables = hdb.build_tables(as_of)
        with tempfile.TemporaryDirectory(prefix="rankswap-features-") as tmp:
            tables.write(Path(tmp))
            with _step(f"publishing features {fs.FEATURE_SCHEMA_VERSION} {as_of} to {store}"):
                return artifacts.publish_artifact(
                    store,
                    "features",
                    fs.FEATURE_SCHEMA_VERSION,
                    as_of,
                    Path(tmp),
                    data_window=(first, as_of - timedelta(days=1)),
                    extra={"row_counts": tables.row_counts, "nbytes": tables.nbytes},
                    force=force,
                    move_latest_backwards=move_latest_backwards,
                )


# ---------------------------------------------------------------------------- model


DEFAULT_CANDIDATES = (
    model.ModelSpec("lgbm_lambdarank", 60, 15),
    model.ModelSpec("sklearn_hgb", 60, 15),
)
SWEEP_CANDIDATES = (
    model.ModelSpec("lgbm_lambdarank", 30, 7),
    model.ModelSpec("lgbm_lambdarank", 60, 15),
    model.ModelSpec("lgbm_lambdarank", 100, 15),
    model.ModelSpec("lgbm_lambdarank", 150, 31),
    model.ModelSpec("sklearn_hgb", 60, 15),
)


@dataclass(frozen=True, slots=True)
class TrainOptions:
    holdout_days: int = 28
    train_days: int = 182
    snapshot_every_days: int = 7
    max_train_expenses: int = 12_000
    max_eval_expenses: int = 1_500
    negatives: int = 24
    seed: int = 7
    candidates: tuple[model.ModelSpec, ...] = DEFAULT_CANDIDATES
    ndcg_tolerance: float = 0.005
    """Candidates within this NDCG@5 of the best count as equal; the fastest of them wins."""
    leaf_budget: int = 1000
    """Only models with at most this many leaves in total (trees x leaves) are eligible: ONNX
    cost is linear in it (~1 ms per 1,000 rows at 900 leaves on a busy 2-core box, see
    docs/DATA.md); a deterministic proxy, where measured latency is noisy."""
    latency_rows: int = 1000
    min_train_days: int = 7
    """A history that leaves fewer days than this before the hold-out is refused (``NoData``)."""
    force: bool = False
    move_latest_backwards: bool = False
    """Point ``latest/`` at this model even when it holds a newer one (a backfill)."""
    extra_metrics: dict[str, Any] = field(default_factory=dict)
    ablation: bool = True
    """Also fit the chosen model without the item-text features (the report's ablation)."""


@dataclass(frozen=True, slots=True)
class TrainWindow:
    """The training window ``[start, cutoff)`` and the hold-out ``[cutoff, as_of)``.

    ``start`` is the requested start (``cutoff - train_days``) unless the history begins later
    (a new customer, a new deployment): then it is the first expense day, and ``clipped``."""

    start: date
    cutoff: date
    as_of: date
    requested_start: date

    @property
    def clipped(self) -> bool:
        return self.start > self.requested_start

    @property
    def days(self) -> int:
        return (self.cutoff - self.start).days

    def describe(self) -> str:
        span = f"{self.start} .. {self.cutoff - timedelta(days=1)}"
        if not self.clipped:
            return f"{span} ({self.days} days)"
        asked = (self.cutoff - self.requested_start).days
        return f"{span} ({self.days} days; {asked} asked, the history starts {self.start})"


def train_window(first_day: date | None, as_of: date, opts: TrainOptions) -> TrainWindow:
    """The effective window for a history whose first expense is dated ``first_day``.

    Raises ``NoData`` (one line, what to do) when there is no history or it leaves fewer than
    ``opts.min_train_days`` days before the hold-out."""
    cutoff = as_of - timedelta(days=opts.holdout_days)
    requested = cutoff - timedelta(days=opts.train_days)
    if first_day is None:
        raise NoData(f"no expenses before {as_of}; nothing to train on (check --as-of and the DB)")
    window = TrainWindow(max(requested, first_day), cutoff, as_of, requested)
    if window.days < opts.min_train_days:
        raise NoData(
            f"the history starts {first_day}: only {max(window.days, 0)} days before the "
            f"{opts.holdout_days}-day hold-out ({cutoff} .. {as_of - timedelta(days=1)}), fewer "
            f"than {opts.min_train_days}; use a smaller --holdout-days or a later --as-of"
        )
    return window


def run_model_train(
    db_url: str, as_of: date, store: str, opts: TrainOptions | None = None
) -> artifacts.Publication:
    """Train, evaluate, export and publish the model as of ``as_of`` (kind=model).

    The steps, one function each: load the history and fix the training window; pick the
    training and hold-out expenses; build their point-in-time pairs; fit and evaluate every
    candidate model (with its ONNX latency) and the baselines; choose one and check its ONNX
    parity; publish it with its report. One ``rng`` seeded by ``opts.seed`` is drawn from in
    this order, so the same data and options give the same model."""
    opts = opts or TrainOptions()
    rng = np.random.default_rng(opts.seed)
    hdb, window = _load_history(db_url, as_of, store, opts)
    with hdb:
        train_pos, eval_pos = _pick_expenses(hdb, window, opts, rng)
        # only the sampled expenses come into memory: row k of ``history`` is position k of
        # train_pos + eval_pos (both ascending, the hold-out after the training window)
        with _step(f"reading the {len(train_pos) + len(eval_pos)} sampled expenses"):
            history = hdb.history_of(np.concatenate([train_pos, eval_pos]))
        train_rows = np.arange(len(train_pos), dtype=np.int64)
        eval_rows = np.arange(len(train_pos), len(train_pos) + len(eval_pos), dtype=np.int64)
        pairs = _build_pairs(hdb, history, window, train_rows, eval_rows, opts, rng)
    fits = _fit_candidates(pairs, opts)
    fits.results.update(_baselines(history, train_rows, pairs))
    chosen, reason = _choose(fits.sweep, opts.ndcg_tolerance, opts.leaf_budget)
    if opts.ablation:
        fits.results.update(_ablation(pairs, opts, chosen))
    pipe, onx = fits.fitted[chosen]
    with _step("ONNX parity check on hold-out rows"):
        held = pairs.held
        take = np.sort(rng.choice(len(held), min(len(held), 50_000), replace=False))
        max_diff = model.parity(pipe, model.session(onx), held.num[take], held.cat[take])
    return _publish_model(store, as_of, window, opts, pairs, fits, chosen, reason, max_diff)


def _load_history(
    db_url: str, as_of: date, store: str, opts: TrainOptions
) -> tuple[columnar.HistoryDB, TrainWindow]:
    """The history the features of the training window need, and the effective window."""
    requested_start = as_of - timedelta(days=opts.holdout_days + opts.train_days)
    with upstream_errors():
        artifacts.parse_uri(store)
        db = ProductDB(db_url)
        try:
            with _step(f"loading history before {as_of}"):
                hdb = columnar.HistoryDB.from_product_db(
                    db,
                    before=as_of,
                    since=requested_start - timedelta(days=features.WINDOW_DAYS),
                )
        finally:
            db.close()
    try:
        window = train_window(hdb.first_day, as_of, opts)
    except BaseException:
        hdb.close()
        raise
    if window.clipped:
        log.warning("training window clipped to the history: %s", window.describe())
    else:
        log.info("training window %s", window.describe())
    return hdb, window


def _pick_expenses(
    hdb: columnar.HistoryDB,
    window: TrainWindow,
    opts: TrainOptions,
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Positions (in (day, id) order) of the training window's expenses (sampled down to
    ``max_train_expenses``) and of the hold-out's (sampled by :func:`_eval_sample`); NoData
    when either is too small."""
    days = hdb.days()
    c_day, a_day = fs.to_day(window.cutoff), fs.to_day(window.as_of)
    s_day = fs.to_day(window.start)
    train_rows = np.flatnonzero((days >= s_day) & (days < c_day))
    eval_rows = np.flatnonzero((days >= c_day) & (days < a_day))
    del days
    if len(train_rows) < 50:
        raise NoData(
            f"only {len(train_rows)} expenses between {window.start} and {window.cutoff} to "
            f"train on (50 needed); check --as-of (the hold-out is the last "
            f"{opts.holdout_days} days before it) and that datagen ran"
        )
    if len(eval_rows) == 0:
        raise NoData(
            f"no expenses in the hold-out {window.cutoff} .. {window.as_of - timedelta(days=1)}"
        )
    if len(train_rows) > opts.max_train_expenses:
        train_rows = np.sort(rng.choice(train_rows, opts.max_train_expenses, replace=False))
    true_items = hdb.item_ids()[eval_rows]
    eval_rows = _eval_sample(hdb.items, eval_rows, true_items, window.cutoff, opts, rng)
    return train_rows, eval_rows


@dataclass(frozen=True, slots=True)
class _Pairs:
    """Point-in-time (expense, candidate) rows for training and for the hold-out."""

    train: dataset.PairSet
    held: dataset.PairSet
    subsets: dict[str, npt.NDArray[np.bool_]]
    active: npt.NDArray[np.bool_]
    """Hold-out rows whose candidate is active today (``evaluate.SERVING_SUBSETS``)."""
    """Hold-out groups per evaluation subset: ``overall``, ``cold_start`` (the chosen item
    was created after the cutoff), ``new_sibling`` and ``new_sibling_named``
    (``evaluate.sibling_subsets``)."""


def _build_pairs(
    hdb: columnar.HistoryDB,
    history: features.History,
    window: TrainWindow,
    train_rows: npt.NDArray[np.int64],
    eval_rows: npt.NDArray[np.int64],
    opts: TrainOptions,
    rng: np.random.Generator,
) -> _Pairs:
    cutoff = window.cutoff
    train_snaps = features.snapshot_dates(
        window.start, cutoff - timedelta(days=1), opts.snapshot_every_days
    )
    if train_snaps[0] > window.start:
        train_snaps.insert(0, window.start)
    eval_snaps = [cutoff + timedelta(days=k) for k in range(opts.holdout_days)]
    # the candidates first (one rng, in this order), then every snapshot the pairs read in
    # one windowed pass over the history (``snapshots``), holding the keys they look up
    drawn_train = dataset.draw(history, train_rows, train_snaps, negatives=opts.negatives, rng=rng)
    drawn_held = dataset.draw(history, eval_rows, eval_snaps, negatives=None, rng=rng)
    reads = [
        snapshots.Reads(d.exp_rows, [d.snaps[int(w)] for w in d.which])
        for d in (drawn_train, drawn_held)
    ]
    items = {**drawn_train.snapshot_items(history), **drawn_held.snapshot_items(history)}
    with _step(f"point-in-time snapshots ({len(train_snaps) + len(eval_snaps)} as-of days)"):
        tables = snapshots.build(hdb, history, reads, items)

    def tables_for(d: date) -> fs.FeatureTables:
        # each snapshot is asked for once (training and hold-out snapshots are distinct
        # days): its tables are freed once its rows are built
        return tables.pop(d)

    with _step(f"training pairs ({len(train_rows)} expenses, {len(train_snaps)} snapshots)"):
        train = dataset.assemble_pairs(history, drawn_train, tables_for)
    with _step(f"hold-out pairs ({len(eval_rows)} expenses, daily snapshots)"):
        held = dataset.assemble_pairs(history, drawn_held, tables_for)
    log.info("train rows %d (%d groups), hold-out rows %d", len(train), train.n_groups, len(held))
    item_created = dict(
        zip(
            history.items["id"].to_numpy(dtype=np.int64),
            history.items["created_s"].to_numpy(dtype=np.int64),
            strict=True,
        )
    )
    cutoff_s = fs.to_day(cutoff) * 86400
    true_items = history.expenses["item_id"].to_numpy(dtype=np.int64)[held.exp_rows]
    cold = np.array([item_created[int(i)] >= cutoff_s for i in true_items], dtype=bool)
    subsets = {
        "overall": np.ones(held.n_groups, dtype=bool),
        "cold_start": cold,
        **evaluate.sibling_subsets(history, held, cold),
    }
    return _Pairs(train, held, subsets, evaluate.active_rows(history, held))


@dataclass(slots=True)
class _Fits:
    """Every candidate fitted: hold-out metrics (baselines added later), the sweep rows of the
    report, and each candidate's (sklearn pipeline, ONNX bytes)."""

    results: dict[str, dict[str, dict[str, float]]]
    sweep: list[dict[str, Any]]
    fitted: dict[str, tuple[Any, bytes]]


def _fit_candidates(pairs: _Pairs, opts: TrainOptions) -> _Fits:
    train, held = pairs.train, pairs.held
    results: dict[str, dict[str, dict[str, float]]] = {}
    fitted: dict[str, tuple[Any, bytes]] = {}
    train_frame = model.feature_frame(train.num, train.cat)
    sessions: dict[str, Any] = {}
    for spec in opts.candidates:
        with _step(f"fitting {spec.label}"):
            pipe = model.fit(spec, train_frame, train.label, train.group_sizes(), opts.seed)
        scores = model.chunked_scores(pipe, held.num, held.cat)
        res = evaluate.evaluate_scores(scores, held, pairs.subsets, pairs.active)
        onx = model.to_onnx(pipe).SerializeToString()
        sessions[spec.label] = model.session(onx)
        results[spec.label] = res
        fitted[spec.label] = (pipe, onx)
        log.info(
            "%s: NDCG@5 %.3f, cold-start Recall@1 %.3f Recall@5 %.3f NDCG@5 %.3f",
            spec.label,
            res["overall"]["ndcg@5"],
            res["cold_start"]["recall@1"],
            res["cold_start"]["recall@5"],
            res["cold_start"]["ndcg@5"],
        )
    with _step(f"ONNX latency per {opts.latency_rows} rows, 1 thread, interleaved"):
        latency = model.compare_latency(sessions, held.num, held.cat, rows=opts.latency_rows)
    sweep: list[dict[str, Any]] = []
    for spec in opts.candidates:
        res = results[spec.label]
        sweep.append(
            {
                "label": spec.label,
                "kind": spec.kind,
                "ndcg@5": res["overall"]["ndcg@5"],
                "cold_recall@1": res["cold_start"]["recall@1"],
                "cold_recall@5": res["cold_start"]["recall@5"],
                "cold_ndcg@5": res["cold_start"]["ndcg@5"],
                "latency_ms": latency[spec.label],
                "leaves": spec.n_estimators * spec.num_leaves,
                "size_kb": len(fitted[spec.label][1]) / 1024,
            }
        )
        log.info("%s: ONNX %.3f ms / %d rows", spec.label, latency[spec.label], opts.latency_rows)
    return _Fits(results, sweep, fitted)


ABLATION_PREFIX = "ablation: "


def _ablation(pairs: _Pairs, opts: TrainOptions, chosen: str) -> dict[str, Any]:
    """The chosen model's pipeline fitted and evaluated again with the item-text features
    (``featurespec.ITEM_TEXT_FEATURES``) held at 0 in training and hold-out rows: a constant
    column is never split on, so this is the same pipeline without them."""
    spec = next(s for s in opts.candidates if s.label == chosen)
    text = [fs.NUMERIC_FEATURES.index(f) for f in fs.ITEM_TEXT_FEATURES]

    def without(num: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = num.copy()
        out[:, text] = 0.0
        return out

    train, held = pairs.train, pairs.held
    with _step(f"ablation: fitting {spec.label} without the item-text features"):
        pipe = model.fit(
            spec,
            model.feature_frame(without(train.num), train.cat),
            train.label,
            train.group_sizes(),
            opts.seed,
        )
    n = model.SCORE_CHUNK_ROWS  # the hold-out without its text features, a chunk at a time
    scores = np.concatenate(
        [
            model.chunked_scores(pipe, without(held.num[k : k + n]), held.cat[k : k + n])
            for k in range(0, len(held), n)
        ]
    )
    label = f"{ABLATION_PREFIX}{spec.label} without item-text features"
    return {label: evaluate.evaluate_scores(scores, held, pairs.subsets, pairs.active)}


def _baselines(
    history: features.History, train_rows: npt.NDArray[np.int64], pairs: _Pairs
) -> dict[str, dict[str, dict[str, float]]]:
    """Hold-out metrics of the baselines the report compares the model with."""
    held, subsets, active = pairs.held, pairs.subsets, pairs.active
    with _step("baselines"):
        mc = evaluate.MulticlassBaseline().fit(history, train_rows)
        return {
            "baseline: popularity": evaluate.evaluate_scores(
                evaluate.popularity_scores(held), held, subsets, active
            ),
            "baseline: employee's recent item": evaluate.evaluate_scores(
                evaluate.recent_item_scores(held), held, subsets, active
            ),
            "baseline: multiclass over item ids": evaluate.evaluate_scores(
                mc.scores(history, held), held, subsets, active
            ),
        }


def _publish_model(
    store: str,
    as_of: date,
    window: TrainWindow,
    opts: TrainOptions,
    pairs: _Pairs,
    fits: _Fits,
    chosen: str,
    reason: str,
    max_diff: float,
) -> artifacts.Publication:
    """Write the chosen model's ONNX graph, report and evaluation, and publish them."""
    results, sweep = fits.results, fits.sweep
    pipe, onx = fits.fitted[chosen]
    train, held = pairs.train, pairs.held
    chosen_sweep = next(s for s in sweep if s["label"] == chosen)
    metrics = {
        "overall": results[chosen]["overall"],
        "cold_start": results[chosen]["cold_start"],
        "new_sibling": results[chosen]["new_sibling"],
        "new_sibling_named": results[chosen]["new_sibling_named"],
        "baselines": {k: v for k, v in results.items() if k.startswith("baseline")},
        "ablation": {k: v for k, v in results.items() if k.startswith(ABLATION_PREFIX)},
        "candidates": {s["label"]: {k: v for k, v in s.items() if k != "label"} for s in sweep},
        "parity_max_abs_diff": max_diff,
        "onnx_latency_ms_per_1000": chosen_sweep["latency_ms"],
    }
    spec = next(s for s in opts.candidates if s.label == chosen)
    facts = {
        "as of": as_of.isoformat(),
        "training window": window.describe(),
        "hold-out": f"{window.cutoff} .. {as_of - timedelta(days=1)}",
        "training pairs": f"{len(train)} rows, {train.n_groups} expenses",
        "hold-out queries": f"{held.n_groups} ({int(pairs.subsets['cold_start'].sum())} "
        f"cold-start, {int(pairs.subsets['new_sibling'].sum())} new sibling items, "
        f"{int(pairs.subsets['new_sibling_named'].sum())} of them named by the description)",
        "feature schema": fs.FEATURE_SCHEMA_VERSION,
        "parity max abs diff": f"{max_diff:.2e}",
    }
    with tempfile.TemporaryDirectory(prefix="rankswap-model-") as tmp:
        out = Path(tmp)
        (out / contract.MODEL_FILE).write_bytes(onx)
        report.write_report(
            out,
            title=f"rankswap model {MODEL_NAME} as of {as_of}",
            results=results,
            sweep=sweep,
            chosen=chosen,
            reason=reason,
            facts=facts,
        )
        (out / "evaluation.json").write_text(
            json.dumps({"results": results, "sweep": sweep}, indent=2, ensure_ascii=False),
            encoding="utf-8",
        )
        extra = {
            **contract.signature(fs.NUMERIC_FEATURES, fs.CATEGORICAL_FEATURES),
            contract.ENCODER_CATEGORIES: model.encoder_categories(pipe),
            "parity_max_abs_diff": max_diff,
            "choice": reason,
        }
        with upstream_errors(), _step(f"publishing model {MODEL_NAME} {as_of} to {store}"):
            return artifacts.publish_artifact(
                store,
                "model",
                MODEL_NAME,
                as_of,
                out,
                data_window=(window.start, as_of - timedelta(days=1)),
                requires_feature_schema=fs.FEATURE_SCHEMA_VERSION,
                metrics=metrics,
                params={
                    **spec.params(),
                    "negatives": opts.negatives,
                    "holdout_days": opts.holdout_days,
                    "train_days": opts.train_days,
                    "train_days_effective": window.days,
                    "snapshot_every_days": opts.snapshot_every_days,
                    "seed": opts.seed,
                },
                extra=extra,
                force=opts.force,
                move_latest_backwards=opts.move_latest_backwards,
            )


def _eval_sample(
    items: Any,
    rows: np.ndarray,
    true_items: np.ndarray,
    cutoff: date,
    opts: TrainOptions,
    rng: np.random.Generator,
) -> np.ndarray:
    """Hold-out expenses to score (all cold-start ones first, up to half the budget);
    ``true_items`` are the chosen items of ``rows``."""
    created = dict(zip(items["id"].to_numpy(), items["created_s"].to_numpy(), strict=True))
    cutoff_s = fs.to_day(cutoff) * 86400
    cold = np.array([created.get(int(i), 0) >= cutoff_s for i in true_items], dtype=bool)
    budget = opts.max_eval_expenses
    cold_rows = rows[cold]
    if len(cold_rows) > budget // 2:
        cold_rows = rng.choice(cold_rows, budget // 2, replace=False)
    warm_rows = rows[~cold]
    room = budget - len(cold_rows)
    if len(warm_rows) > room:
        warm_rows = rng.choice(warm_rows, room, replace=False)
    return np.sort(np.concatenate([cold_rows, warm_rows]))


def _choose(sweep: list[dict[str, Any]], tolerance: float, leaf_budget: int) -> tuple[str, str]:
    """Best NDCG@5 among models within the leaf budget; near-ties go to the cheaper graph."""
    eligible = [s for s in sweep if s["leaves"] <= leaf_budget] or sweep
    best = max(s["ndcg@5"] for s in eligible)
    close = [s for s in eligible if s["ndcg@5"] >= best - tolerance]
    pick = min(close, key=lambda s: (s["leaves"], s["latency_ms"]))
    others = ", ".join(
        f"{s['label']} NDCG@5 {s['ndcg@5']:.3f} @ {s['latency_ms']:.2f} ms" for s in sweep
    )
    reason = (
        f"Kept {pick['label']}: best hold-out NDCG@5 among models within {leaf_budget} leaves "
        f"in total (the ONNX cost driver), the smallest of those within {tolerance} of the "
        f"best ({best:.3f}); candidates: {others}."
    )
    return str(pick["label"]), reason


# ---------------------------------------------------------------------------- examples


def run_examples(
    db_url: str,
    store: str,
    *,
    model_ref: date | Literal["latest"] = "latest",
    features_ref: date | Literal["latest"] = "latest",
    tenant: str | None = None,
    n: int = 3,
    top_k: int = 5,
    cache_dir: Path | None = None,
) -> str:
    """Rank a few recent expenses from the DB with the published model + features.

    The default cache is per user (``$XDG_CACHE_HOME/rankswap/examples``, else
    ``~/.cache/rankswap/examples``): a fixed folder in the shared temp folder could be planted
    by another user."""
    cache = cache_dir or default_examples_cache()
    with upstream_errors():
        m_uri = artifacts.artifact_uri(store, "model", MODEL_NAME, model_ref)
        f_uri = artifacts.artifact_uri(store, "features", fs.FEATURE_SCHEMA_VERSION, features_ref)
        m_manifest, m_dir = artifacts.fetch_artifact(m_uri, cache, expect_kind="model")
        if m_manifest.requires_feature_schema != fs.FEATURE_SCHEMA_VERSION:
            raise SchemaMismatch(
                f"model {m_manifest.version} requires feature schema "
                f"{m_manifest.requires_feature_schema}, this code builds "
                f"{fs.FEATURE_SCHEMA_VERSION}; train a model for {fs.FEATURE_SCHEMA_VERSION}"
            )
        f_manifest, f_dir = artifacts.fetch_artifact(f_uri, cache, expect_kind="features")
        artifacts.check_compatible(m_manifest, f_manifest)
        tables = fs.FeatureTables.open(f_dir)
        sess = model.session((m_dir / contract.MODEL_FILE).read_bytes())
        db = ProductDB(db_url)
        try:
            if tenant is not None and not db.has_tenant(tenant):
                raise UpstreamError(f"unknown tenant {tenant!r}")
            e = schema.expenses
            stmt = select(e).order_by(e.c.expense_date.desc(), e.c.id.desc()).limit(n)
            if tenant is not None:
                stmt = stmt.where(e.c.tenant_id == tenant)
            # prefer expenses the features have not seen (dated on/after their as-of date)
            sample = db.frame(stmt.where(e.c.expense_date >= tables.as_of))
            if sample.empty:
                sample = db.frame(stmt)
            if sample.empty:
                raise NoData("no expenses to rank" + (f" for tenant {tenant}" if tenant else ""))
            lines = [
                f"model {MODEL_NAME} {m_manifest.version} (features {f_manifest.version}, "
                f"schema {tables.schema_version}, as of {tables.as_of})"
            ]
            for rec in sample.to_dict("records"):
                vendor_raw = rec["vendor_id"]
                vendor = None if vendor_raw is None or vendor_raw != vendor_raw else int(vendor_raw)
                ctx = db.make_context(
                    fs.RankContext(
                        str(rec["tenant_id"]),
                        employee_id=int(rec["employee_id"]),
                        vendor_id=vendor,
                        description=str(rec["description"]),
                        amount=float(rec["amount"]),
                        expense_date=rec["expense_date"],
                    )
                )
                cands = db.candidates(ctx.tenant_id)
                mi = fs.assemble(ctx, cands, tables)
                scores = model.onnx_scores(sess, mi.num, mi.cat)
                top = np.argsort(-scores, kind="stable")[:top_k]
                lines.append(
                    f"\n{ctx.tenant_id} {ctx.expense_date} employee {ctx.employee_id} "
                    f"({ctx.employee_department}) vendor {ctx.vendor_id} ({ctx.vendor_industry}) "
                    f"¥{ctx.amount:,.0f} {ctx.description!r}  [{len(cands)} candidates, "
                    f"{mi.item_default_rows} without feature rows]"
                )
                for r, j in enumerate(top, 1):
                    mark = "  <- chosen" if int(cands.item_ids[j]) == int(rec["item_id"]) else ""
                    lines.append(
                        f"  {r}. {cands.names[j]} [{cands.categories[j]}] "
                        f"id={cands.item_ids[j]} score={scores[j]:.3f}{mark}"
                    )
            return "\n".join(lines)
        finally:
            db.close()


def default_examples_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rankswap" / "examples"


def ensure_training_error(exc: BaseException) -> TrainingError:
    return exc if isinstance(exc, TrainingError) else TrainingError(str(exc))
