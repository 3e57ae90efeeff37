"""A synthetic ranking model with the cost profile of the real one (for benchmarks only).

One ONNX graph with the ranker's signature (``num`` float [N, F], ``cat`` string [N, C] →
``score`` [N]): categorical columns are encoded inside the graph by ``LabelEncoder`` nodes
(unseen → -1), concatenated with the numeric columns and scored by a ``TreeEnsembleRegressor``
of ``trees`` random trees with ``leaves`` leaves each (the prototype's 200 × 31 by default).
ONNX cost depends on trees × depth × rows, not on what the trees learned.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from rankswap import featurespec as fs


def _random_tree(
    rng: np.random.Generator, leaves: int, n_features: int
) -> list[tuple[int, int, float, int, int]]:
    """Nodes (id, feature, threshold, true_id, false_id); leaves have feature -1."""
    nodes: dict[int, list[float]] = {0: [-1, 0.0, -1, -1]}
    frontier = [0]
    next_id = 1
    while len(frontier) < leaves:
        leaf = frontier.pop(int(rng.integers(len(frontier))))
        left, right = next_id, next_id + 1
        next_id += 2
        nodes[leaf] = [int(rng.integers(n_features)), float(rng.uniform(0, 5)), left, right]
        nodes[left] = [-1, 0.0, -1, -1]
        nodes[right] = [-1, 0.0, -1, -1]
        frontier += [left, right]
    return [(i, int(n[0]), n[1], int(n[2]), int(n[3])) for i, n in sorted(nodes.items())]


def tree_model(trees: int = 200, leaves: int = 31, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    f, c = len(fs.NUMERIC_FEATURES), len(fs.CATEGORICAL_FEATURES)
    attrs: dict[str, Any] = {
        k: []
        for k in (
            "nodes_treeids",
            "nodes_nodeids",
            "nodes_featureids",
            "nodes_values",
            "nodes_modes",
            "nodes_truenodeids",
            "nodes_falsenodeids",
            "target_treeids",
            "target_nodeids",
            "target_ids",
            "target_weights",
        )
    }
    for t in range(trees):
        for node_id, feat, thr, yes, no in _random_tree(rng, leaves, f + c):
            leaf = feat < 0
            attrs["nodes_treeids"].append(t)
            attrs["nodes_nodeids"].append(node_id)
            attrs["nodes_featureids"].append(0 if leaf else feat)
            attrs["nodes_values"].append(thr)
            attrs["nodes_modes"].append("LEAF" if leaf else "BRANCH_LEQ")
            attrs["nodes_truenodeids"].append(0 if leaf else yes)
            attrs["nodes_falsenodeids"].append(0 if leaf else no)
            if leaf:
                attrs["target_treeids"].append(t)
                attrs["target_nodeids"].append(node_id)
                attrs["target_ids"].append(0)
                attrs["target_weights"].append(float(rng.normal(0, 0.1)))
    vocab = [f"v{i}" for i in range(50)]
    nodes = [helper.make_node("Split", ["cat"], [f"c{j}" for j in range(c)], axis=1, num_outputs=c)]
    coded = []
    for j in range(c):
        nodes.append(helper.make_node("Reshape", [f"c{j}", "flat"], [f"s{j}"]))
        nodes.append(
            helper.make_node(
                "LabelEncoder",
                [f"s{j}"],
                [f"e{j}"],
                domain="ai.onnx.ml",
                keys_strings=vocab,
                values_floats=[float(i) for i in range(len(vocab))],
                default_float=-1.0,
            )
        )
        nodes.append(helper.make_node("Reshape", [f"e{j}", "col"], [f"k{j}"]))
        coded.append(f"k{j}")
    nodes.append(helper.make_node("Concat", ["num", *coded], ["x"], axis=1))
    nodes.append(
        helper.make_node(
            "TreeEnsembleRegressor",
            ["x"],
            ["y"],
            domain="ai.onnx.ml",
            n_targets=1,
            aggregate_function="SUM",
            **attrs,
        )
    )
    nodes.append(helper.make_node("Reshape", ["y", "flat"], ["score"]))
    graph = helper.make_graph(
        nodes,
        f"synthetic-gbdt-{trees}x{leaves}",
        [
            helper.make_tensor_value_info("num", TensorProto.FLOAT, [None, f]),
            helper.make_tensor_value_info("cat", TensorProto.STRING, [None, c]),
        ],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None])],
        initializer=[
            helper.make_tensor("flat", TensorProto.INT64, [1], [-1]),
            helper.make_tensor("col", TensorProto.INT64, [2], [-1, 1]),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
