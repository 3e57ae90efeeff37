"""The ``gbdt`` section: ONNX Runtime's TreeEnsemble against the ranker's compiled trees.

The same trees (the real model's ``TreeEnsembleRegressor`` node, compiled at load by
:mod:`rankswap_ranker.treejit`) and the same rows (the real tenants' assembled rows), taking
turns call by call, thread CPU time: the evaluators alone on their encoded input, and the whole
model stage (``TreeScorer.score``: encoding and layout included) each way, and whether the
scores are bit-identical.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np


def compare(bundle: Any, inputs: dict[str, list[Any]], calls: int) -> dict[str, Any]:
    """Per tenant: ORT (the tree ensemble alone) vs the compiled trees, same rows."""
    trees = bundle.trees
    if trees is None or trees.native is None:
        return {"unavailable": "the bundle's trees are not compiled (see the ranker's log)"}
    native = trees.native
    out: dict[str, Any] = {
        "compile_s": native.compile_s,
        "trees": len(native.ensemble.trees),
        "nodes": native.ensemble.nodes,
    }
    for tenant, rows_in in inputs.items():
        encoded = [
            (i, trees.rows(i.num, i.cat), trees.columns(i.num, i.cat, native.stride(i.rows)))
            for i in rows_in
        ]

        def ort(i: Any, x: Any, c: Any) -> Any:
            return trees.session.run([trees.output_name], {trees.input_name: x})[0].reshape(-1)

        def compiled(i: Any, x: Any, c: Any) -> Any:
            return native.score(c, i.rows)

        def stage_ort(i: Any, x: Any, c: Any) -> Any:
            return trees.score_ort(i.num, i.cat)

        def stage_compiled(i: Any, x: Any, c: Any) -> Any:
            return trees.score(i.num, i.cat)

        runs = {"ort": ort, "compiled": compiled, "stage_ort": stage_ort}
        runs["stage_compiled"] = stage_compiled
        same = all(
            np.array_equal(f(*e), ort(*e), equal_nan=True) for e in encoded for f in runs.values()
        )
        times: dict[str, list[int]] = {name: [] for name in runs}
        for _ in range(max(1, calls // len(encoded))):
            for e in encoded:
                for name, f in runs.items():
                    s = time.thread_time_ns()
                    f(*e)
                    times[name].append(time.thread_time_ns() - s)
        out[tenant] = {"rows": encoded[0][0].rows, "bit_identical": same} | {
            f"{name}_ms": statistics.median(v) / 1e6 for name, v in times.items()
        }
    return out


def report(x: dict[str, Any]) -> list[str]:
    lines = ["### The model's trees: ONNX Runtime vs the compiled trees (treejit)", ""]
    if "unavailable" in x:
        return [*lines, f"Not measured: {x['unavailable']}.", ""]
    lines += [
        f"{x['trees']} trees, {x['nodes']} nodes, compiled from the ONNX node by llvmlite in "
        f"{x['compile_s']:.2f} s at load; the same rows, taking turns call by call (thread CPU, "
        "medians). *Evaluator*: the trees alone on their encoded input; *model stage*: "
        "`TreeScorer.score` from the assembled `num`/`cat` (encoding and layout included).",
        "",
        "| tenant | rows | ORT TreeEnsemble ms | compiled ms | compiled / ORT | model stage, ORT ms "
        "| model stage, compiled ms | compiled / ORT | scores bit-identical |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t, d in x.items():
        if isinstance(d, dict):
            lines.append(
                f"| {t} | {d['rows']:,} | {d['ort_ms']:.3f} | {d['compiled_ms']:.3f} | "
                f"{d['compiled_ms'] / d['ort_ms']:.2f} | {d['stage_ort_ms']:.3f} | "
                f"{d['stage_compiled_ms']:.3f} | "
                f"{d['stage_compiled_ms'] / d['stage_ort_ms']:.2f} | "
                f"{'yes' if d['bit_identical'] else 'NO'} |"
            )
    lines.append("")
    return lines
