"""A "bad but loadable" model for tests and the demo: a good model with a broken feature join.

:func:`publish_permuted` republishes a good model with its numeric input columns in reverse
order (one ``Gather`` in front of the graph) and the good features under a new date. It
verifies, loads, smoke-scores and answers 200, but ranks differently: only an analysis of how
it ranks live requests (docs/OPERATOR.md, "Analysis") catches it.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from rankswap import featurespec as fs
from rankswap.artifacts import artifact_uri, fetch_artifact, publish_artifact
from rankswap.artifacts.model_contract import INPUT_NUM, MODEL_FILE


def permute_numeric_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` reading its numeric input columns in reverse order (changed in place)."""
    permuted = f"{INPUT_NUM}_permuted"
    for node in model.graph.node:
        node.input[:] = [permuted if i == INPUT_NUM else i for i in node.input]
    width = len(fs.NUMERIC_FEATURES)
    model.graph.initializer.append(
        helper.make_tensor("perm", TensorProto.INT64, [width], list(reversed(range(width))))
    )
    model.graph.node.insert(0, helper.make_node("Gather", [INPUT_NUM, "perm"], [permuted], axis=1))
    onnx.checker.check_model(model)
    return model


def publish_permuted(
    root: str, name: str, schema: str, good: date, when: date, work: Path
) -> tuple[str, str]:
    """Publish the permuted model of ``good`` (and ``good``'s features) as of ``when``; the
    model and features URIs."""
    manifest, local = fetch_artifact(artifact_uri(root, "model", name, good), work / "cache")
    src = work / "model"
    shutil.copytree(local, src, ignore=shutil.ignore_patterns("manifest.json", ".complete"))
    model = permute_numeric_inputs(onnx.load(str(src / MODEL_FILE)))
    onnx.save(model, str(src / MODEL_FILE))
    fman, flocal = fetch_artifact(artifact_uri(root, "features", schema, good), work / "cache")
    fsrc = work / "features"
    shutil.copytree(flocal, fsrc, ignore=shutil.ignore_patterns("manifest.json", ".complete"))
    publish_artifact(
        root, "features", schema, when, fsrc, data_window=fman.data_window, extra=fman.extra
    )
    publish_artifact(
        root,
        "model",
        name,
        when,
        src,
        requires_feature_schema=schema,
        metrics=manifest.metrics,
        params=manifest.params,
        extra=manifest.extra,
    )
    return artifact_uri(root, "model", name, when), artifact_uri(root, "features", schema, when)
