"""The ``gbdt`` section: ONNX Runtime's TreeEnsemble against a compiled GBDT evaluator.

The same trees (the real model's ``TreeEnsembleRegressor`` node, rebuilt with treelite's model
builder and compiled to a shared library by tl2cgen with gcc) and the same rows (the real
tenants' assembled and encoded rows, :meth:`rankswap_ranker.treescore.TreeScorer.rows`), taking
turns call by call: median time per call and the largest score difference.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np


def treelite_model(attrs: dict[str, list[Any]], num_feature: int) -> Any:
    """The ONNX tree ensemble as a treelite model (the same splits and leaf weights)."""
    from treelite.model_builder import Metadata, ModelBuilder, PostProcessorFunc, TreeAnnotation

    if attrs.get("post_transform", ["NONE"])[0] not in ("NONE", b"NONE"):
        raise ValueError("only post_transform NONE is rebuilt")
    trees = sorted(set(attrs["nodes_treeids"]))
    leaf_weight: dict[tuple[int, int], float] = {}
    for t, n, w in zip(
        attrs["target_treeids"], attrs["target_nodeids"], attrs["target_weights"], strict=True
    ):
        leaf_weight[(t, n)] = leaf_weight.get((t, n), 0.0) + w
    base = attrs.get("base_values") or [0.0]
    builder = ModelBuilder(
        threshold_type="float32",
        leaf_output_type="float32",
        metadata=Metadata(
            num_feature=num_feature,
            task_type="kRegressor",
            average_tree_output=False,
            num_target=1,
            num_class=[1],
            leaf_vector_shape=(1, 1),
        ),
        tree_annotation=TreeAnnotation(
            num_tree=len(trees), target_id=[0] * len(trees), class_id=[0] * len(trees)
        ),
        postprocessor=PostProcessorFunc(name="identity"),
        base_scores=[float(base[0])],
    )
    cols = zip(
        attrs["nodes_treeids"],
        attrs["nodes_nodeids"],
        attrs["nodes_featureids"],
        attrs["nodes_modes"],
        attrs["nodes_values"],
        attrs["nodes_truenodeids"],
        attrs["nodes_falsenodeids"],
        attrs.get("nodes_missing_value_tracks_true") or [0] * len(attrs["nodes_treeids"]),
        strict=True,
    )
    by_tree: dict[int, list[tuple[Any, ...]]] = {}
    for row in cols:
        by_tree.setdefault(row[0], []).append(row)
    ops = {"BRANCH_LEQ": "<=", "BRANCH_LT": "<", "BRANCH_GTE": ">=", "BRANCH_GT": ">"}
    for t in trees:
        builder.start_tree()  # type: ignore[no-untyped-call]
        for _, node, feature, mode, value, true_id, false_id, missing_true in by_tree[t]:
            builder.start_node(node)
            if mode == "LEAF":
                builder.leaf(leaf_weight.get((t, node), 0.0))
            else:
                builder.numerical_test(
                    feature,
                    value,
                    default_left=bool(missing_true),
                    opname=ops[mode],
                    left_child_key=true_id,
                    right_child_key=false_id,
                )
            builder.end_node()  # type: ignore[no-untyped-call]
        builder.end_tree()  # type: ignore[no-untyped-call]
    return builder.commit()


def compare(bundle: Any, inputs: dict[str, list[Any]], work: Path, calls: int) -> dict[str, Any]:
    """Per tenant: ORT (tree ensemble alone, the ranker's path) vs the compiled library."""
    try:
        import tl2cgen
    except ImportError as exc:
        return {"unavailable": f"tl2cgen/treelite not installed ({exc})"}
    from rankswap_ranker import treescore

    trees = bundle.trees
    if trees is None:
        return {"unavailable": "the model is not split into a tree ensemble"}
    model_bytes = (Path(bundle.ref.model.local_dir) / "model.onnx").read_bytes()
    attrs = treescore.ensemble_attributes(model_bytes)
    first = next(iter(inputs.values()))[0]
    width = first.num.shape[1] + len(trees.encoders)
    t0 = time.perf_counter()
    lib = work / "gbdt" / "trees.so"
    lib.parent.mkdir(parents=True, exist_ok=True)
    tl2cgen.export_lib(treelite_model(attrs, width), toolchain="gcc", libpath=lib, nthread=1)
    predictor = tl2cgen.Predictor(str(lib), nthread=1)
    compile_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "compile_s": compile_s,
        "trees": len(set(attrs["nodes_treeids"])),
        "nodes": len(attrs["nodes_treeids"]),
    }
    for tenant, rows_in in inputs.items():
        rows = [trees.rows(i.num, i.cat) for i in rows_in]

        def ort(x: Any) -> Any:
            return trees.session.run([trees.output_name], {trees.input_name: x})[0].reshape(-1)

        def compiled(x: Any) -> Any:
            return predictor.predict(tl2cgen.DMatrix(x, dtype="float32")).reshape(-1)

        diff = max(float(np.max(np.abs(ort(x) - compiled(x)))) for x in rows)
        times: dict[str, list[float]] = {"ort": [], "compiled": []}
        for _ in range(max(1, calls // len(rows))):
            for x in rows:
                for name, f in (("ort", ort), ("compiled", compiled)):
                    s = time.perf_counter()
                    f(x)
                    times[name].append(time.perf_counter() - s)
        out[tenant] = {
            "rows": int(rows[0].shape[0]),
            "ort_ms": statistics.median(times["ort"]) * 1000,
            "compiled_ms": statistics.median(times["compiled"]) * 1000,
            "max_abs_diff": diff,
        }
    return out


def report(x: dict[str, Any]) -> list[str]:
    lines = ["### The model's trees: ONNX Runtime vs a compiled evaluator (treelite + tl2cgen)", ""]
    if "unavailable" in x:
        return [*lines, f"Not measured: {x['unavailable']}.", ""]
    lines += [
        f"{x['trees']} trees, {x['nodes']} nodes, rebuilt from the ONNX node with treelite's "
        f"model builder and compiled by tl2cgen/gcc in {x['compile_s']:.1f} s; the same encoded "
        "rows, taking turns call by call (medians).",
        "",
        "| tenant | rows | ORT TreeEnsemble ms | compiled ms | compiled / ORT | max abs score diff |",
        "|---|---|---|---|---|---|",
    ]
    for t, d in x.items():
        if isinstance(d, dict):
            lines.append(
                f"| {t} | {d['rows']:,} | {d['ort_ms']:.3f} | {d['compiled_ms']:.3f} | "
                f"{d['compiled_ms'] / d['ort_ms']:.2f} | {d['max_abs_diff']:.2e} |"
            )
    lines.append("")
    return lines
