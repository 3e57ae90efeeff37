"""The compiled tree ensemble: ONNX Runtime's scores bit for bit, or not used at all."""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from tests.unit.ranker.builders import F, publish_bundle, tree_model

from rankswap_ranker import bundle as bundles
from rankswap_ranker import treejit, treescore

pytestmark = pytest.mark.timeout(60)

WIDTH = 11
MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT")


def random_ensemble(seed: int, trees: int = 25, base: float | None = 0.25) -> dict[str, Any]:
    """A ``TreeEnsembleRegressor``'s attributes: random shapes (up to depth 6), every branch
    mode, missing values going either way, thresholds that are not round numbers."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[Any]] = {k: [] for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
        "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
        "target_treeids", "target_nodeids", "target_ids", "target_weights",
    )}  # fmt: skip
    for t in range(trees):
        rows: list[list[Any]] = []

        def grow(depth: int, t: int = t, rows: list[list[Any]] = rows) -> int:
            me = len(rows)
            rows.append([])
            if depth >= 6 or (depth > 0 and rng.random() < 0.3):
                rows[me] = [t, me, 0, "LEAF", 0.0, 0, 0, 0]
                w = float(np.float32(rng.normal(0, 0.3)))
                cols["target_treeids"].append(t)
                cols["target_nodeids"].append(me)
                cols["target_ids"].append(0)
                cols["target_weights"].append(w)
                return me
            feature = int(rng.integers(0, WIDTH))
            thr = float(np.float32(rng.normal(0, 1.5)))
            mode = MODES[int(rng.integers(0, len(MODES)))]
            left = grow(depth + 1)
            right = grow(depth + 1)
            rows[me] = [t, me, feature, mode, thr, left, right, int(rng.integers(0, 2))]
            return me

        grow(0)
        for row in rows:
            for key, value in zip(list(cols)[:8], row, strict=True):
                cols[key].append(value)
    attrs: dict[str, Any] = dict(cols, n_targets=1, post_transform="NONE")
    if base is not None:
        attrs["base_values"] = [base]
    return attrs


def onnx_ensemble(attrs: dict[str, Any]) -> ort.InferenceSession:
    node = helper.make_node("TreeEnsembleRegressor", ["x"], ["y"], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph(
        [node],
        "trees",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    model.ir_version = 8
    return ort.InferenceSession(
        model.SerializeToString(), bundles.session_options(1), providers=["CPUExecutionProvider"]
    )


def as_read(attrs: dict[str, Any]) -> dict[str, list[Any]]:
    """The attributes as :func:`treescore.attribute_values` gives them (lists)."""
    return {k: v if isinstance(v, list) else [v] for k, v in attrs.items()}


def compiled_scores(native: treejit.NativeTrees, x: npt.NDArray[np.float32]) -> Any:
    n = x.shape[0]
    cols = np.zeros((WIDTH, native.stride(n)), dtype=np.float32)
    cols[:, :n] = x.T
    return native.score(cols, n)


def test_compiled_trees_score_exactly_as_onnx_runtime() -> None:
    """Random trees, random rows, rows on every threshold and next to it, NaNs, row counts
    that are not whole vectors: the same float32 scores, bit for bit."""
    for seed, base in ((1, 0.25), (2, None), (3, -3.5)):
        attrs = random_ensemble(seed, base=base)
        session = onnx_ensemble(attrs)
        native = treejit.compile_ensemble(treejit.ensemble(as_read(attrs), WIDTH))
        rng = np.random.default_rng(seed)
        thresholds = np.asarray(attrs["nodes_values"], dtype=np.float32)
        for n in (1, 7, 8, 13, 300):
            x = rng.normal(0, 2, (n, WIDTH)).astype(np.float32)
            on = thresholds[rng.integers(0, thresholds.shape[0], (n, WIDTH))]
            x = np.where(rng.random((n, WIDTH)) < 0.5, on, x)
            x[rng.random((n, WIDTH)) < 0.1] = np.nan
            want = session.run(["y"], {"x": x})[0].reshape(-1)
            got = compiled_scores(native, x)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want)
            assert got.tobytes() == want.tobytes()


def test_an_identical_ensemble_is_compiled_once_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(treejit, "_kept", {})
    ens = treejit.ensemble(as_read(random_ensemble(7)), WIDTH)
    first = treejit.compile_ensemble(ens)
    again = treejit.compile_ensemble(treejit.ensemble(as_read(random_ensemble(7)), WIDTH))
    assert first.compile_s > 0 and again.compile_s == 0
    assert again.engine is first.engine
    for seed in range(8, 8 + treejit.KEPT):
        treejit.compile_ensemble(treejit.ensemble(as_read(random_ensemble(seed)), WIDTH))
    assert len(treejit._kept) == treejit.KEPT
    assert treejit.compile_ensemble(ens).compile_s > 0  # the oldest went first


def test_the_kernel_refuses_rows_of_another_shape() -> None:
    native = treejit.compile_ensemble(treejit.ensemble(as_read(random_ensemble(4)), WIDTH))
    with pytest.raises(ValueError, match="float32"):
        native.score(np.zeros((WIDTH, 8), dtype=np.float64), 8)
    with pytest.raises(ValueError, match="float32"):
        native.score(np.zeros((WIDTH, 8), dtype=np.float32), 9)
    with pytest.raises(ValueError, match="float32"):
        native.score(np.zeros((8, WIDTH), dtype=np.float32).T, 8)


def _broken(change: str) -> dict[str, list[Any]]:
    a = copy.deepcopy(as_read(random_ensemble(5, trees=3)))
    first_branch = a["nodes_modes"].index("BRANCH_LEQ") if "BRANCH_LEQ" in a["nodes_modes"] else 0
    if change == "cycle":
        a["nodes_truenodeids"][0] = 0
    elif change == "shared child":
        a["nodes_falsenodeids"][0] = a["nodes_truenodeids"][0]
    elif change == "child outside the tree":
        a["nodes_truenodeids"][0] = 999
    elif change == "feature outside the row":
        a["nodes_featureids"][first_branch] = WIDTH
    elif change == "negative feature":
        a["nodes_featureids"][first_branch] = -1
    elif change == "unknown mode":
        a["nodes_modes"][first_branch] = "BRANCH_EQ"
    elif change == "trees out of order":
        a["nodes_treeids"] = [t if t != 1 else 7 for t in a["nodes_treeids"]]
    elif change == "root not first":
        a["nodes_nodeids"][0], a["nodes_nodeids"][1] = a["nodes_nodeids"][1], a["nodes_nodeids"][0]
    elif change == "duplicate node ids":
        a["nodes_nodeids"][1] = a["nodes_nodeids"][2]
    elif change == "leaf without a weight":
        for k in ("target_treeids", "target_nodeids", "target_ids", "target_weights"):
            a[k] = a[k][1:]
    elif change == "weight on a branch":
        a["target_nodeids"][0] = 0
    elif change == "two weights on a leaf":
        for k in ("target_treeids", "target_nodeids", "target_ids", "target_weights"):
            a[k] = [a[k][0], *a[k]]
    elif change == "another target":
        a["target_ids"][0] = 1
    elif change == "lengths differ":
        a["nodes_values"] = a["nodes_values"][:-1]
    elif change == "post transform":
        a["post_transform"] = ["LOGISTIC"]
    elif change == "aggregate":
        a["aggregate_function"] = ["AVERAGE"]
    elif change == "two targets":
        a["n_targets"] = [2]
    elif change == "two base values":
        a["base_values"] = [0.0, 1.0]
    elif change == "thresholds as a tensor":
        a["nodes_values_as_tensor"] = []
    elif change == "no nodes":
        a = {k: [] if k.startswith("nodes_") else v for k, v in a.items()}
    return a


@pytest.mark.parametrize(
    "change",
    [
        "cycle", "shared child", "child outside the tree", "feature outside the row",
        "negative feature", "unknown mode", "trees out of order", "root not first",
        "duplicate node ids", "leaf without a weight", "weight on a branch",
        "two weights on a leaf", "another target", "lengths differ", "post transform",
        "aggregate", "two targets", "two base values", "thresholds as a tensor", "no nodes",
    ],
)  # fmt: skip
def test_a_malformed_or_unusual_ensemble_is_not_compiled(change: str) -> None:
    treejit.ensemble(_broken("none"), WIDTH)  # the unbroken one compiles
    with pytest.raises(treejit.Unsupported):
        treejit.ensemble(_broken(change), WIDTH)


def test_too_many_nodes_are_not_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    attrs = as_read(random_ensemble(6))
    monkeypatch.setattr(treejit, "MAX_NODES", len(attrs["nodes_treeids"]) - 1)
    with pytest.raises(treejit.Unsupported, match="nodes"):
        treejit.ensemble(attrs, WIDTH)


def _bundle(file_root: str, tmp_path: Path, cache_dir: Path, **kw: Any) -> bundles.Bundle:
    pub = publish_bundle(file_root, tmp_path, item_ids=np.arange(1, 51), model_bytes=tree_model())
    return bundles.load(bundles.resolve(pub.model_uri, pub.features_uri, cache_dir), **kw)


def test_a_bundle_serves_compiled_trees_that_passed_the_parity_check(
    file_root: str, tmp_path: Path, cache_dir: Path
) -> None:
    bundle = _bundle(file_root, tmp_path, cache_dir)
    assert bundle.trees is not None and bundle.trees.native is not None
    parity = bundles.parity_rows(bundle, bundle.trees.encoders)
    scores = bundle.score(parity)
    np.testing.assert_array_equal(scores, bundle.score_whole(parity))
    np.testing.assert_array_equal(scores, bundle.trees.score_ort(parity.num, parity.cat))
    validated = _bundle(file_root, tmp_path, cache_dir, compile_trees=False)
    assert validated.trees is not None and validated.trees.native is None
    threads = _bundle(file_root, tmp_path, cache_dir, intra_op_threads=2)  # another sum order
    assert threads.trees is not None and threads.trees.native is None


def test_the_compiled_trees_input_is_one_buffer_per_thread(
    file_root: str, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled trees' input is written into one buffer per thread, grown to the largest
    input: inputs of every size, in any order, score as ONNX Runtime does on the same rows
    (a smaller input after a larger one leaves no rows behind); the next call on the thread
    reuses the memory, another thread gets its own, an input over the limit its own array."""
    bundle = _bundle(file_root, tmp_path, cache_dir)
    trees = bundle.trees
    assert trees is not None and trees.native is not None
    parity = bundles.parity_rows(bundle, trees.encoders)
    total = parity.num.shape[0]
    assert total > 9
    for k in (total, 3, total, 1, 9, total - 1):
        num, cat = parity.num[:k], parity.cat[:k]
        got = trees.score(num, cat)
        assert got.tobytes() == trees.score_ort(num, cat).tobytes()
    height = parity.num.shape[1] + len(trees.encoders)
    first = trees.buffers.get(height, 64)
    again = trees.buffers.get(height, 8)
    assert again.flags.c_contiguous and again.shape == (height, 8)
    assert np.shares_memory(first, again)
    elsewhere: list[npt.NDArray[np.float32]] = []
    worker = threading.Thread(target=lambda: elsewhere.append(trees.buffers.get(height, 64)))
    worker.start()
    worker.join(10)
    assert elsewhere and not np.shares_memory(first, elsewhere[0])
    monkeypatch.setattr(treescore, "BUFFER_LIMIT", height * 8)
    assert not np.shares_memory(first, trees.buffers.get(height, 16))
    num, cat = parity.num, parity.cat
    assert trees.score(num, cat).tobytes() == trees.score_ort(num, cat).tobytes()


def test_compiled_trees_that_score_otherwise_are_not_used(
    file_root: str,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One leaf weight off by one float32 step: the parity check at load refuses the compiled
    code (logged), and ONNX Runtime scores the trees."""
    real_compile = treejit.compile_ensemble

    def off_by_one_step(ens: treejit.Ensemble, **kw: Any) -> treejit.NativeTrees:
        tree = ens.trees[0]
        leaf = tree.op.index("")
        weight = list(tree.weight)
        weight[leaf] = float(np.nextafter(np.float32(weight[leaf]), np.float32(np.inf)))
        wrong = dataclasses.replace(tree, weight=tuple(weight))
        return real_compile(dataclasses.replace(ens, trees=(wrong, *ens.trees[1:])), **kw)

    monkeypatch.setattr(treejit, "compile_ensemble", off_by_one_step)
    with caplog.at_level(logging.WARNING, logger="rankswap.ranker.bundle"):
        bundle = _bundle(file_root, tmp_path, cache_dir)
    assert bundle.trees is not None and bundle.trees.native is None
    assert "compiled trees do not score as the whole graph" in caplog.text


def test_trees_that_cannot_be_compiled_are_scored_by_onnx_runtime(
    file_root: str,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(treejit, "MAX_NODES", 1)
    with caplog.at_level(logging.INFO, logger="rankswap.ranker.bundle"):
        bundle = _bundle(file_root, tmp_path, cache_dir)
    assert bundle.trees is not None and bundle.trees.native is None
    assert "trees not compiled" in caplog.text
    monkeypatch.undo()

    def llvm_fails(ens: treejit.Ensemble, **kw: Any) -> treejit.NativeTrees:
        raise RuntimeError("LLVM ERROR: out of luck")

    monkeypatch.setattr(treejit, "compile_ensemble", llvm_fails)
    with caplog.at_level(logging.WARNING, logger="rankswap.ranker.bundle"):
        bundle = _bundle(file_root, tmp_path, cache_dir)
    assert bundle.trees is not None and bundle.trees.native is None
    assert "out of luck" in caplog.text


def test_the_real_attribute_reader_gives_what_the_compiler_reads() -> None:
    """``treescore`` reads the node's attributes from the protobuf itself (floats packed or
    not, strings, ints); the compiled trees built from them score as ORT on the model."""
    trees = treescore.split(tree_model(), F, None)
    assert trees is not None
    assert trees.attributes["nodes_modes"][0] == "BRANCH_LEQ"
    assert trees.attributes["post_transform"] == ["NONE"]
    assert trees.attributes["nodes_values"][0] == pytest.approx(2.5)
    width = F + len(trees.encoders)
    ens = treejit.ensemble(trees.attributes, width)
    assert ens.nodes == len(trees.attributes["nodes_treeids"])


def test_the_benchmark_compares_both_evaluators_on_the_same_rows(
    file_root: str, tmp_path: Path, cache_dir: Path
) -> None:
    from rankswap_dev.bench_ranker import gbdt

    bundle = _bundle(file_root, tmp_path, cache_dir)
    assert bundle.trees is not None
    parity = bundles.parity_rows(bundle, bundle.trees.encoders)
    result = gbdt.compare(bundle, {"t001": [parity]}, calls=4)
    assert result["t001"]["bit_identical"] is True
    assert result["t001"]["rows"] == parity.rows
    table = "\n".join(gbdt.report(result))
    assert "| t001 |" in table and "| yes |" in table
    no_native = _bundle(file_root, tmp_path, cache_dir, compile_trees=False)
    assert "Not measured" in "\n".join(gbdt.report(gbdt.compare(no_native, {}, calls=1)))
