"""Model fitting, ONNX export (one graph: encoders + model), parity and latency checks.

The exported graph has two inputs, ``num`` float32 [N, len(NUMERIC_FEATURES)] and ``cat``
string [N, len(CATEGORICAL_FEATURES)], and one output ``score`` float32 [N] (higher = better).
Categorical strings are encoded inside the graph by the fitted ``OrdinalEncoder`` (unseen and
empty strings map to -1, as in scikit-learn); trees split on the codes as numbers (no native
categorical splits: see docs/DATA.md for why).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd
from onnx import TensorProto, helper

from rankswap import featurespec as fs
from rankswap.artifacts.model_contract import INPUT_CAT, INPUT_NUM, OUTPUT_SCORE
from rankswap_training.errors import ParityError

log = logging.getLogger(__name__)

ModelKind = Literal["lgbm_lambdarank", "sklearn_hgb"]
PARITY_TOLERANCE = 1e-4
OPSET = {"": 17, "ai.onnx.ml": 3}
FEATURE_COLUMNS = (*fs.NUMERIC_FEATURES, *fs.CATEGORICAL_FEATURES)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model configuration to fit (and maybe keep)."""

    kind: ModelKind
    n_estimators: int
    num_leaves: int
    learning_rate: float = 0.1

    @property
    def label(self) -> str:
        short = "lgbm" if self.kind == "lgbm_lambdarank" else "hgb"
        return f"{short}-{self.n_estimators}x{self.num_leaves}"

    def params(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "n_estimators": self.n_estimators,
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
        }


def feature_frame(num: npt.NDArray[np.float32], cat: npt.NDArray[np.object_]) -> pd.DataFrame:
    """The named-column frame the sklearn pipeline is fitted on (one column per feature)."""
    data: dict[str, Any] = {name: num[:, j] for j, name in enumerate(fs.NUMERIC_FEATURES)}
    for j, name in enumerate(fs.CATEGORICAL_FEATURES):
        data[name] = pd.Series(cat[:, j].astype(str), dtype=object)
    return pd.DataFrame(data)


def make_pipeline(spec: ModelSpec, seed: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    encoder = ColumnTransformer(
        [
            ("num", "passthrough", list(fs.NUMERIC_FEATURES)),
            (
                "cat",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, dtype=np.float32
                ),
                list(fs.CATEGORICAL_FEATURES),
            ),
        ]
    )
    if spec.kind == "lgbm_lambdarank":
        from lightgbm import LGBMRanker

        model: Any = LGBMRanker(
            objective="lambdarank",
            n_estimators=spec.n_estimators,
            num_leaves=spec.num_leaves,
            learning_rate=spec.learning_rate,
            min_child_samples=20,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.9,
            lambdarank_truncation_level=10,
            random_state=seed,
            n_jobs=2,
            verbose=-1,
        )
    else:
        from sklearn.ensemble import HistGradientBoostingRegressor

        # pointwise: regress the 0/1 relevance label; only the order of scores matters
        model = HistGradientBoostingRegressor(
            max_iter=spec.n_estimators,
            max_leaf_nodes=spec.num_leaves,
            learning_rate=spec.learning_rate,
            early_stopping=False,
            random_state=seed,
        )
    return Pipeline([("encode", encoder), ("model", model)])


def fit(
    spec: ModelSpec,
    frame: pd.DataFrame,
    label: npt.NDArray[np.float32],
    group_sizes: npt.NDArray[np.int64],
    seed: int,
) -> Any:
    pipe = make_pipeline(spec, seed)
    t0 = time.perf_counter()
    if spec.kind == "lgbm_lambdarank":
        pipe.fit(frame, label, model__group=group_sizes)
    else:
        pipe.fit(frame, label)
    log.info("fitted %s on %d rows in %.1fs", spec.label, len(frame), time.perf_counter() - t0)
    return pipe


def native_scores(pipe: Any, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    return np.asarray(pipe.predict(frame), dtype=np.float64).reshape(-1)


SCORE_CHUNK_ROWS = 65_536


def chunked_scores(
    pipe: Any,
    num: npt.NDArray[np.float32],
    cat: npt.NDArray[np.object_],
    *,
    rows: int = SCORE_CHUNK_ROWS,
) -> npt.NDArray[np.float64]:
    """``native_scores`` of the rows, ``rows`` at a time: the named-column frame (a Python
    string per categorical value) and the pipeline's encoded copy exist for one chunk only.
    Every row's score is computed alone, so the scores are those of one call on all rows."""
    out = np.empty(len(num), dtype=np.float64)
    for k in range(0, len(num), rows):
        out[k : k + rows] = native_scores(pipe, feature_frame(num[k : k + rows], cat[k : k + rows]))
    return out


# ------------------------------------------------------------------------------ ONNX


def to_onnx(pipe: Any) -> onnx.ModelProto:
    """Convert the fitted pipeline to ONE graph with inputs ``num``/``cat``, output ``score``."""
    from lightgbm import LGBMRanker
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import convert_sklearn, update_registered_converter
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes

    update_registered_converter(
        LGBMRanker,
        "LightGbmLGBMRanker",
        calculate_linear_regressor_output_shapes,
        convert_lightgbm,
    )
    initial = [(c, FloatTensorType([None, 1])) for c in fs.NUMERIC_FEATURES] + [
        (c, StringTensorType([None, 1])) for c in fs.CATEGORICAL_FEATURES
    ]
    with _skl2onnx_bool_workaround(), _float32_floor_thresholds():
        model = convert_sklearn(pipe, initial_types=initial, target_opset=OPSET)
    return _pack_inputs(model)


@contextlib.contextmanager
def _skl2onnx_bool_workaround() -> Iterator[None]:
    """skl2onnx 1.20 passes HistGradientBoosting's numpy-bool ``missing_go_to_left`` into an
    ONNX int attribute, which onnx 1.23 rejects ("Expected an int, got a boolean"). Cast it to
    int for the duration of one conversion (scoped, restored afterwards); the parity check at
    export proves the result."""
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node

    def add_node(*args: Any, **kwargs: Any) -> Any:
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(
                kwargs["nodes_missing_value_tracks_true"]
            )
        return original(*args, **kwargs)

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = original


def float32_floor(threshold: float) -> float:
    """The largest float32 ``t`` with ``t <= threshold``: for every float32 ``x``,
    ``x <= threshold`` (the native model, in float64) iff ``x <= t`` (the graph, in float32).

    Rounding to the *nearest* float32 (what the converters do) breaks that whenever the double
    threshold lies just below a float32 value ``v``: ``v`` goes right natively and left in the
    graph. LightGBM's thresholds are midpoints of two training values, so on a grid of values
    (k/10^4) the midpoint of k and k+2 is the grid value k+1 itself, a value the training rows
    need not hold but the parity / serving rows do (0.136 on the test world)."""
    t = np.float32(threshold)
    if float(t) > threshold:
        t = np.nextafter(t, np.float32(-np.inf), dtype=np.float32)
    return float(t)


def _floor_dump(node: dict[str, Any]) -> None:
    """Snap the numerical thresholds of one LightGBM ``dump_model`` tree (in place)."""
    stack = [node]
    while stack:
        nd = stack.pop()
        if "split_feature" not in nd:
            continue
        if nd.get("decision_type") == "<=" and not isinstance(nd["threshold"], str):
            nd["threshold"] = float32_floor(float(nd["threshold"]))
        stack.extend(nd[k] for k in ("left_child", "right_child") if k in nd)


@contextlib.contextmanager
def _float32_floor_thresholds() -> Iterator[None]:
    """For one conversion (scoped, restored afterwards), write every ``<=`` split threshold
    into the graph as :func:`float32_floor` of the model's double threshold, so that the
    float32 graph takes the native model's branch on every float32 input (the graph's input is
    float32; the models are fitted and predict in float64 on the same float32 values). LightGBM
    through onnxmltools' ``dump_booster_model``; HistGradientBoosting through skl2onnx's
    ``add_node`` (both round to nearest otherwise)."""
    from onnxmltools.convert.lightgbm.operator_converters import LightGbm
    from skl2onnx.common import tree_ensemble

    original_dump = LightGbm.dump_booster_model
    original_add = tree_ensemble.add_node

    def dump_booster_model(*args: Any, **kwargs: Any) -> Any:
        text, info = original_dump(*args, **kwargs)
        for tree in text["tree_info"]:
            _floor_dump(tree["tree_structure"])
        return text, info

    def add_node(*args: Any, **kwargs: Any) -> Any:
        # add_node(attr_pairs, is_classifier, tree_id, tree_weight, node_id, feature_id,
        #          mode, value, ...): skl2onnx passes them positionally
        args_l = list(args)
        mode = kwargs["mode"] if "mode" in kwargs else args_l[6]
        if mode == "BRANCH_LEQ":
            if "value" in kwargs:
                kwargs["value"] = float32_floor(float(kwargs["value"]))
            else:
                args_l[7] = float32_floor(float(args_l[7]))
        return original_add(*args_l, **kwargs)

    LightGbm.dump_booster_model = dump_booster_model
    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        LightGbm.dump_booster_model = original_dump
        tree_ensemble.add_node = original_add


def _pack_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace the per-column inputs by ``INPUT_NUM`` [N, F] and ``INPUT_CAT`` [N, C] (a Gather
    per column) and expose the single output as ``OUTPUT_SCORE`` [N]
    (:mod:`rankswap.artifacts.model_contract`)."""
    graph = model.graph
    old_inputs = {i.name for i in graph.input}
    expected = set(FEATURE_COLUMNS)
    if old_inputs != expected:
        raise ParityError(f"unexpected ONNX inputs {sorted(old_inputs)}")
    nodes = []
    inits = []
    for name, source, cols in (
        ("num", INPUT_NUM, fs.NUMERIC_FEATURES),
        ("cat", INPUT_CAT, fs.CATEGORICAL_FEATURES),
    ):
        for j, col in enumerate(cols):
            idx = f"rankswap_idx_{name}_{j}"
            inits.append(helper.make_tensor(idx, TensorProto.INT64, [1], [j]))
            nodes.append(helper.make_node("Gather", [source, idx], [col], axis=1))
    if len(graph.output) != 1:
        raise ParityError(f"expected one ONNX output, got {[o.name for o in graph.output]}")
    out_name = graph.output[0].name
    inits.append(helper.make_tensor("rankswap_flat", TensorProto.INT64, [1], [-1]))
    tail = helper.make_node("Reshape", [out_name, "rankswap_flat"], [OUTPUT_SCORE])
    body = list(graph.node)
    # skl2onnx re-concatenates the numeric columns in order: feed ``num`` straight through
    # instead (saves one Gather per numeric feature, ~0.2 ms per call at 1,000 rows)
    for k, node in enumerate(body):
        if node.op_type == "Concat" and tuple(node.input) == fs.NUMERIC_FEATURES:
            body[k] = helper.make_node("Identity", [INPUT_NUM], list(node.output))
            used = {i for nd in body for i in nd.input}
            nodes = [nd for nd in nodes if nd.output[0] in used]
            used_inits = {i for nd in nodes for i in nd.input}
            inits = [t for t in inits if not t.name.startswith("rankswap_idx_num_")]
            inits = [
                t for t in inits if t.name in used_inits or not t.name.startswith("rankswap_idx")
            ]
            break
    new_graph = helper.make_graph(
        nodes + body + [tail],
        "rankswap_ranker",
        [
            helper.make_tensor_value_info(
                INPUT_NUM, TensorProto.FLOAT, ["N", len(fs.NUMERIC_FEATURES)]
            ),
            helper.make_tensor_value_info(
                INPUT_CAT, TensorProto.STRING, ["N", len(fs.CATEGORICAL_FEATURES)]
            ),
        ],
        [helper.make_tensor_value_info(OUTPUT_SCORE, TensorProto.FLOAT, ["N"])],
        initializer=list(graph.initializer) + inits,
    )
    packed = helper.make_model(new_graph, opset_imports=list(model.opset_import))
    packed.ir_version = model.ir_version
    packed.producer_name = "rankswap"
    onnx.checker.check_model(packed)
    return packed


def session(model_bytes: bytes, threads: int = 1) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def onnx_scores(
    sess: Any, num: npt.NDArray[np.float32], cat: npt.NDArray[np.object_]
) -> npt.NDArray[np.float32]:
    out = sess.run([OUTPUT_SCORE], {INPUT_NUM: num, INPUT_CAT: cat})[0]
    return np.asarray(out, dtype=np.float32)


def parity(
    pipe: Any,
    sess: Any,
    num: npt.NDArray[np.float32],
    cat: npt.NDArray[np.object_],
) -> float:
    """Max |native - ONNX| over the given rows; raises ParityError above the tolerance."""
    native = native_scores(pipe, feature_frame(num, cat))
    onnx_out = onnx_scores(sess, num, cat).astype(np.float64)
    diff = float(np.max(np.abs(native - onnx_out))) if len(native) else 0.0
    if not diff <= PARITY_TOLERANCE:
        raise ParityError(
            f"ONNX scores differ from the native model by {diff:.3g} (> {PARITY_TOLERANCE}) "
            f"on {len(native)} held-out rows; not publishing"
        )
    return diff


def latency_ms(
    sess: Any,
    num: npt.NDArray[np.float32],
    cat: npt.NDArray[np.object_],
    rows: int = 1000,
    repeat: int = 60,
    blocks: int = 5,
) -> float:
    """Single-threaded ONNX latency (ms) of one call with ``rows`` rows: the lowest of
    ``blocks`` medians of ``repeat`` calls (robust to other load on a shared machine)."""
    idx = np.resize(np.arange(len(num)), rows)
    n, c = np.ascontiguousarray(num[idx]), cat[idx]
    for _ in range(10):
        onnx_scores(sess, n, c)
    medians = []
    for _ in range(blocks):
        times = np.empty(repeat)
        for k in range(repeat):
            t0 = time.perf_counter()
            onnx_scores(sess, n, c)
            times[k] = time.perf_counter() - t0
        medians.append(float(np.median(times)))
    return min(medians) * 1e3


def compare_latency(
    sessions: dict[str, Any],
    num: npt.NDArray[np.float32],
    cat: npt.NDArray[np.object_],
    rows: int = 1000,
    rounds: int = 5,
    repeat: int = 40,
) -> dict[str, float]:
    """``latency_ms`` of several graphs measured in interleaved rounds (each graph's lowest
    block median), so that load from other processes does not favour one candidate."""
    best = {k: float("inf") for k in sessions}
    for _ in range(rounds):
        for label, sess in sessions.items():
            ms = latency_ms(sess, num, cat, rows=rows, repeat=repeat, blocks=1)
            best[label] = min(best[label], ms)
    return best


def encoder_categories(pipe: Any) -> dict[str, list[str]]:
    """The categories the fitted encoder knows, per categorical feature (for the manifest)."""
    enc = pipe.named_steps["encode"].named_transformers_["cat"]
    return {
        name: [str(v) for v in cats]
        for name, cats in zip(fs.CATEGORICAL_FEATURES, enc.categories_, strict=True)
    }
