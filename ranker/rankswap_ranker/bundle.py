"""Bundles: a model artifact and a features artifact, validated together before serving.

Two steps, each usable on its own:

* :func:`resolve` (the pod's supervisor, once per pod): fetch both artifacts into the pod-local
  cache (every file's sha256 checked against its manifest; a cached version is reused), check
  kinds and schema compatibility, and describe the result as a :class:`BundleRef` — plain data
  with local paths, written to the pod's desired-bundle file.
* :func:`load` (every process that serves, and the supervisor once to validate): memory-map the
  feature tables, build the ONNX session, check its signature against the feature schema, run a
  smoke scoring. Only a bundle that passed all of it is ever made active.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rankswap import featurespec as fs
from rankswap.artifacts import Manifest, check_compatible, fetch_artifact
from rankswap.artifacts import model_contract as contract
from rankswap.artifacts.cache_layout import read_cached_manifest
from rankswap.artifacts.model_contract import INPUT_CAT, INPUT_NUM, MODEL_FILE, OUTPUT_SCORE
from rankswap.podstate import ArtifactState, BundleState, ResolvedBundle
from rankswap_ranker import topk, treejit, treescore
from rankswap_ranker.assembly import parity_checked_fill
from rankswap_ranker.errors import BundleIncompatible, ModelInvalid, SmokeScoringFailed
from rankswap_ranker.treescore import Encoder, TreeScorer

log = logging.getLogger("rankswap.ranker.bundle")


@dataclass(frozen=True)
class ArtifactInfo:
    """One artifact of a bundle: where it was asked for, what it is, where it sits locally."""

    uri: str
    name: str
    version: str
    as_of: str
    created_at: str
    local_dir: str

    @staticmethod
    def of(uri: str, manifest: Manifest, local_dir: Path) -> ArtifactInfo:
        return ArtifactInfo(
            uri=uri,
            name=manifest.name,
            version=manifest.version,
            as_of=manifest.as_of.isoformat(),
            created_at=manifest.created_at.isoformat(),
            local_dir=str(local_dir),
        )

    def public(self) -> ArtifactState:
        """What the admin state shows (no local path)."""
        return ArtifactState(
            uri=self.uri,
            name=self.name,
            version=self.version,
            as_of=self.as_of,
            created_at=self.created_at,
        )


@dataclass(frozen=True)
class BundleRef:
    """A resolved bundle: both artifacts verified in the local cache. Plain, JSON-able data."""

    model: ArtifactInfo
    features: ArtifactInfo

    @property
    def bundle_id(self) -> str:
        """Content-derived: ``<model version>+<features version>``."""
        return bundle_id(self.model.version, self.features.version)

    def resolved(self) -> ResolvedBundle:
        """As recorded in ``desired.json``."""
        return ResolvedBundle.model_validate(asdict(self))

    @staticmethod
    def of(resolved: ResolvedBundle) -> BundleRef:
        return BundleRef(
            model=ArtifactInfo(**resolved.model.model_dump()),
            features=ArtifactInfo(**resolved.features.model_dump()),
        )

    def public(self) -> BundleState:
        return BundleState(
            bundle_id=self.bundle_id, model=self.model.public(), features=self.features.public()
        )


def bundle_id(model_version: str, features_version: str) -> str:
    return f"{model_version}+{features_version}"


def resolve(model_uri: str, features_uri: str, cache_dir: Path) -> BundleRef:
    """Fetch both artifacts (verified, cached) and check that they belong together."""
    model_manifest, model_dir = fetch_artifact(model_uri, cache_dir, expect_kind="model")
    features_manifest, features_dir = fetch_artifact(
        features_uri, cache_dir, expect_kind="features"
    )
    check_compatible(model_manifest, features_manifest)  # SchemaMismatch
    if features_manifest.schema_version != fs.FEATURE_SCHEMA_VERSION:
        raise BundleIncompatible(
            f"features {features_manifest.version} have schema "
            f"{features_manifest.schema_version}; this ranker reads {fs.FEATURE_SCHEMA_VERSION}"
        )
    if MODEL_FILE not in model_manifest.files:
        raise ModelInvalid(f"{model_uri}: the manifest lists no {MODEL_FILE}")
    return BundleRef(
        model=ArtifactInfo.of(model_uri, model_manifest, model_dir),
        features=ArtifactInfo.of(features_uri, features_manifest, features_dir),
    )


@dataclass(frozen=True)
class LoadTimings:
    features_s: float
    session_s: float
    smoke_s: float

    @property
    def total_s(self) -> float:
        return self.features_s + self.session_s + self.smoke_s


@dataclass(eq=False)
class Bundle:
    """A loaded bundle: memory-mapped feature tables and an ONNX session, ready to score."""

    ref: BundleRef
    tables: fs.FeatureTables
    session: Any  # onnxruntime.InferenceSession (untyped library)
    timings: LoadTimings
    encoder_vocab: dict[str, frozenset[str]] = field(default_factory=dict)
    """Categorical values the model's encoder was fitted on, per categorical feature (from the
    model manifest's ``extra.encoder_categories``; empty when the manifest does not say)."""
    loaded_at: float = field(default_factory=time.time)
    fill: fs.Fill = fs.fill_numpy
    """The arithmetic of the feature assembly (:mod:`rankswap_ranker.assembly`): the compiled
    kernels when they gave the numpy reference's bits on this bundle's tables."""
    top_k: topk.TopK = topk.reference
    """The choice of the best candidates (:mod:`rankswap_ranker.topk`): compiled where numba
    can be used, else numpy's; both choose the same rows."""
    trees: TreeScorer | None = None
    """The tree ensemble alone behind the graph's own encoders (:mod:`rankswap_ranker.treescore`),
    kept only when it scores the parity rows bit-identically to the whole graph; None: the
    whole graph scores."""

    @property
    def bundle_id(self) -> str:
        return self.ref.bundle_id

    @property
    def features_created_at(self) -> float:
        return datetime.fromisoformat(self.ref.features.created_at).timestamp()

    def assemble(self, ctx: fs.RankContext, candidates: fs.Candidates) -> fs.ModelInput:
        """The model input of one expense and its candidates with this bundle's tables."""
        return fs.assemble_with(ctx, candidates, self.tables, self.fill)

    def score(self, inputs: fs.ModelInput) -> npt.NDArray[np.float32]:
        """One score per candidate row (higher ranks first)."""
        if inputs.rows == 0:
            return np.empty(0, dtype=np.float32)
        if self.trees is not None:
            return self.trees.score(inputs.num, inputs.cat)
        return self.score_whole(inputs)

    def score_whole(self, inputs: fs.ModelInput) -> npt.NDArray[np.float32]:
        """Scores of the whole ONNX graph (the artifact as published)."""
        # ``num`` is column-major (built for the compiled trees); ONNX Runtime takes row-major
        num = np.ascontiguousarray(inputs.num)
        out = self.session.run([OUTPUT_SCORE], {INPUT_NUM: num, INPUT_CAT: inputs.cat})
        return np.asarray(out[0], dtype=np.float32).reshape(-1)


def session_options(intra_op_threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only; warnings would go to stderr unstructured
    # Worker threads that spin while idle burn a shared core for nothing.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def load(
    ref: BundleRef,
    *,
    intra_op_threads: int = 1,
    prefault: bool = False,
    compile_trees: bool = True,
    compile_assembly: bool = True,
) -> Bundle:
    """Open, check and smoke-score a resolved bundle. Raises a BundleLoadFailed subclass.

    ``prefault`` reads every page of the memory-mapped tables once, so the first requests do
    not wait for the disk (the pages are shared: other workers find them in the page cache).
    ``compile_trees`` compiles the tree ensemble (:func:`parity_checked_native`, ~0.3 s): what
    serves wants it, a validation that only checks the bundle does not. Only with one intra-op
    thread: on more, ONNX Runtime adds partial sums of trees, an order the compiled code does
    not reproduce. ``compile_assembly`` assembles the model inputs with the compiled kernels
    when they give the numpy reference's bits on this bundle's tables
    (:func:`rankswap_ranker.assembly.parity_checked_fill`; the first load in a process compiles
    them or loads them from numba's disk cache).
    """
    t0 = time.perf_counter()
    try:
        tables = fs.FeatureTables.open(Path(ref.features.local_dir))
    except fs.FeatureSpecError as exc:
        raise BundleIncompatible(f"features {ref.features.version}: {exc}") from exc
    if prefault:
        prefault_tables(tables)
    t1 = time.perf_counter()
    model_path = Path(ref.model.local_dir) / MODEL_FILE
    session = _open_session(model_path, ref, intra_op_threads)
    t2 = time.perf_counter()
    bundle = Bundle(
        ref=ref,
        tables=tables,
        session=session,
        timings=LoadTimings(0, 0, 0),
        encoder_vocab=encoder_vocab(Path(ref.model.local_dir)),
    )
    smoke_score(bundle)
    bundle.trees = parity_checked_trees(bundle, model_path.read_bytes(), intra_op_threads)
    if bundle.trees is not None and compile_trees and intra_op_threads == 1:
        # (ONNX Runtime on more threads sums partial sums of trees: another order)
        bundle.trees = parity_checked_native(bundle, bundle.trees)
    if compile_assembly:
        bundle.fill = parity_checked_fill(tables, f"features {ref.features.version}")
        bundle.top_k = topk.compiled()
    smoke_score(bundle)
    t3 = time.perf_counter()
    bundle.timings = LoadTimings(features_s=t1 - t0, session_s=t2 - t1, smoke_s=t3 - t2)
    return bundle


def encoder_vocab(model_dir: Path) -> dict[str, frozenset[str]]:
    """The encoder's fitted values per categorical feature, from the cached model manifest
    (empty if it does not say)."""
    manifest = read_cached_manifest(model_dir)
    return {} if manifest is None else contract.encoder_vocab(manifest)


def prefault_tables(tables: fs.FeatureTables) -> int:
    """Touch one byte per page of every table column; returns the bytes covered."""
    covered = 0
    for table in tables.tables.values():
        arrays: list[npt.NDArray[Any]] = [table.keys, *table.columns.values()]
        for arr in arrays:
            if arr.size:
                raw = arr.view(np.uint8)
                int(raw[::4096].sum())
                covered += arr.nbytes
    return covered


def _open_session(path: Path, ref: BundleRef, intra_op_threads: int) -> Any:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(
            str(path),
            sess_options=session_options(intra_op_threads),
            providers=["CPUExecutionProvider"],
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors (Fail, InvalidGraph...)
        raise ModelInvalid(
            f"model {ref.model.version}: onnxruntime cannot load it ({exc})"
        ) from exc
    check_signature(session, ref.model.version)
    return session


def check_signature(session: Any, model_version: str) -> None:
    """The model must take ``num`` float [N, F] and ``cat`` string [N, C] and give ``score``."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    want = {
        INPUT_NUM: ("tensor(float)", len(fs.NUMERIC_FEATURES)),
        INPUT_CAT: ("tensor(string)", len(fs.CATEGORICAL_FEATURES)),
    }
    problems = []
    for name, (typ, width) in want.items():
        node = inputs.get(name)
        if node is None:
            problems.append(f"no input {name!r}")
            continue
        if node.type != typ:
            problems.append(f"input {name!r} is {node.type}, expected {typ}")
        shape = list(node.shape)
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != width):
            problems.append(f"input {name!r} has shape {shape}, expected [N, {width}]")
    extra = sorted(set(inputs) - set(want))
    if extra:
        problems.append(f"unexpected inputs {extra}")
    if OUTPUT_SCORE not in outputs:
        problems.append(f"no output {OUTPUT_SCORE!r} (has {sorted(outputs)})")
    if problems:
        raise BundleIncompatible(
            f"model {model_version} does not match feature schema "
            f"{fs.FEATURE_SCHEMA_VERSION}: " + "; ".join(problems)
        )


SMOKE_ROWS = 16


def smoke_candidates(tables: fs.FeatureTables, rows: int = SMOKE_ROWS) -> fs.Candidates:
    """Candidates for a smoke scoring: known items from the tables plus one unseen item."""
    known = np.asarray(tables.tables["item"].keys[: rows - 1], dtype=np.int64)
    item_ids = np.concatenate([known, np.array([2**31 - 1], dtype=np.int64)])
    n = item_ids.shape[0]

    def strings(value: str) -> npt.NDArray[np.object_]:
        arr = np.empty(n, dtype=object)
        arr[:] = [value] * n
        return arr

    return fs.Candidates(
        item_ids=item_ids,
        codes=strings("smoke"),
        names=strings("smoke"),
        category_ids=np.full(n, -1, dtype=np.int64),
        categories=strings("smoke-category"),
        account_codes=strings(""),
        created_at=np.full(n, np.datetime64("2000-01-01T00:00:00", "s")),
    )


PARITY_ROWS = 512


def parity_rows(bundle: Bundle, encoders: tuple[Encoder, ...]) -> fs.ModelInput:
    """Rows to compare the two ways of scoring on: the smoke request's assembled rows, then
    random numeric rows (wide and narrow ranges) with every encoder key, unseen and empty
    strings in the categorical columns (fixed seed)."""
    ctx = fs.RankContext(
        tenant_id="__parity__",
        employee_id=None,
        vendor_id=None,
        description="parity",
        amount=1234.0,
        expense_date=date.today(),
    )
    smoke = fs.assemble(ctx, smoke_candidates(bundle.tables), bundle.tables)
    rng = np.random.default_rng(14)
    n, width = PARITY_ROWS, smoke.num.shape[1]
    scale = np.where(rng.random((n, 1)) < 0.5, 3.0, 400.0)
    num = (rng.normal(0.0, 1.0, (n, width)) * scale).astype(np.float32)
    num[: n // 4] = np.abs(num[: n // 4])
    cat = np.empty((n, smoke.cat.shape[1]), dtype=object)
    for j in range(cat.shape[1]):
        keys = [k for e in encoders if e.column == j for k in e.codes]
        pool = [*keys, "", "__unseen__", *smoke.cat[:, j].tolist()]
        cat[:, j] = [pool[int(i)] for i in rng.integers(0, len(pool), n)]
    return fs.ModelInput(
        num=np.concatenate([smoke.num, num]),
        cat=np.concatenate([smoke.cat, cat]),
        rows=smoke.rows + n,
        item_default_rows=0,
        emp_item_default_rows=0,
        unknown_employee_rows=0,
        unknown_vendor_rows=0,
        unknown_terms=0,
    )


def parity_checked_trees(bundle: Bundle, model: bytes, intra_op_threads: int) -> TreeScorer | None:
    """The tree ensemble alone (:func:`rankswap_ranker.treescore.split`) if it scores the
    parity rows exactly as the whole graph does; else None (logged), and the graph scores."""
    trees = treescore.split(model, len(fs.NUMERIC_FEATURES), session_options(intra_op_threads))
    if trees is None:
        return None
    rows = parity_rows(bundle, trees.encoders)
    try:
        same = bool(np.array_equal(trees.score(rows.num, rows.cat), bundle.score_whole(rows)))
    except Exception:  # onnxruntime's own errors: score the whole graph
        log.warning("model %s: the tree ensemble alone failed to score", bundle.ref.model.version)
        return None
    if not same:
        log.warning(
            "model %s: the tree ensemble alone does not score as the whole graph; the whole "
            "graph scores",
            bundle.ref.model.version,
        )
        return None
    return trees


def threshold_rows(ens: treejit.Ensemble, rows: int) -> npt.NDArray[np.float32]:
    """Rows whose every feature sits exactly on, or next to, one of the trees' thresholds for
    that feature (where ``<`` and ``<=`` part), some of them NaN (fixed seed)."""
    rng = np.random.default_rng(15)
    width = ens.width
    by_feature: list[list[float]] = [[] for _ in range(width)]
    for tree in ens.trees:
        for f, thr, op in zip(tree.feature, tree.threshold, tree.op, strict=True):
            if op:
                by_feature[f].append(thr)
    out = rng.normal(0.0, 1.0, (rows, width)).astype(np.float32)
    for f, values in enumerate(by_feature):
        if values:
            picked = np.asarray(values, dtype=np.float32)[rng.integers(0, len(values), rows)]
            step = rng.integers(-1, 2, rows)  # below, on, above
            inf = np.float32(np.inf)
            toward = np.where(step < 0, -inf, np.where(step > 0, inf, picked))
            out[:, f] = np.nextafter(picked, toward.astype(np.float32))
    out[rng.random((rows, width)) < 0.05] = np.nan
    return out


def parity_checked_native(bundle: Bundle, trees: TreeScorer) -> TreeScorer:
    """``trees`` with the ensemble compiled (:mod:`rankswap_ranker.treejit`) if the compiled
    code scores the parity rows, and rows on the thresholds, exactly as the whole graph does;
    else ``trees`` as they are (logged: ONNX Runtime scores)."""
    version = bundle.ref.model.version
    width = len(fs.NUMERIC_FEATURES)
    try:
        ens = treejit.ensemble(trees.attributes, width + len(trees.encoders))
        native = treejit.compile_ensemble(ens)
    except treejit.Unsupported as exc:
        log.info("model %s: trees not compiled (%s); ONNX Runtime scores them", version, exc)
        return trees
    except Exception as exc:  # llvmlite's own errors: ONNX Runtime scores
        log.warning("model %s: compiling the trees failed (%s); ONNX Runtime scores", version, exc)
        return trees
    compiled = dataclasses.replace(trees, native=native, memo=trees.memo)
    rows = parity_rows(bundle, trees.encoders)
    on_thresholds = threshold_rows(ens, PARITY_ROWS)
    edge = dataclasses.replace(
        rows, num=on_thresholds[:, :width], cat=rows.cat[:PARITY_ROWS], rows=PARITY_ROWS
    )
    same = all(
        np.array_equal(compiled.score(r.num, r.cat), bundle.score_whole(r), equal_nan=True)
        for r in (rows, edge)
    )
    if not same:
        log.warning(
            "model %s: the compiled trees do not score as the whole graph; ONNX Runtime scores",
            version,
        )
        return trees
    how = f"compiled in {native.compile_s:.3f} s" if native.compile_s else "compiled before"
    log.info("model %s: trees %s (%d nodes)", version, how, ens.nodes)
    return compiled


def smoke_score(bundle: Bundle) -> None:
    """Score a synthetic request end to end; raise SmokeScoringFailed unless scores are sane."""
    ctx = fs.RankContext(
        tenant_id="__smoke__",
        employee_id=None,
        vendor_id=None,
        description="smoke test 交通費",
        amount=1234.0,
        expense_date=date.today(),
    )
    candidates = smoke_candidates(bundle.tables)
    try:
        inputs = bundle.assemble(ctx, candidates)
        scores = bundle.score(inputs)
    except Exception as exc:  # the model can fail in any way: that is what the smoke test finds
        raise SmokeScoringFailed(
            f"bundle {bundle.bundle_id}: smoke scoring raised {type(exc).__name__}: {exc}"
        ) from exc
    if scores.shape != (len(candidates),):
        raise SmokeScoringFailed(
            f"bundle {bundle.bundle_id}: {scores.shape[0]} scores for {len(candidates)} rows"
        )
    if not all(math.isfinite(float(s)) for s in scores):
        raise SmokeScoringFailed(f"bundle {bundle.bundle_id}: non-finite scores")


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
