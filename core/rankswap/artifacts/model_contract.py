"""The model artifact's contract: what training writes and the ranker reads.

A model artifact holds one ONNX graph, ``MODEL_FILE``, with the categorical encoders inside it
(they can never diverge from the model). The graph takes ``INPUT_NUM`` (float32 [N, numeric
features]) and ``INPUT_CAT`` (string [N, categorical features]), in the column order of
``rankswap.featurespec``, and returns ``OUTPUT_SCORE`` (float32 [N], higher ranks first). The
manifest's ``extra`` describes the same signature (:func:`signature`) and lists, under
``ENCODER_CATEGORIES``, the values the encoder was fitted on, per categorical feature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from rankswap.artifacts.manifest import Manifest

MODEL_FILE: Final = "model.onnx"
INPUT_NUM: Final = "num"
INPUT_CAT: Final = "cat"
OUTPUT_SCORE: Final = "score"
ENCODER_CATEGORIES: Final = "encoder_categories"
"""Key of ``Manifest.extra``: {categorical feature: [values the encoder was fitted on]}."""


def signature(numeric: Sequence[str], categorical: Sequence[str]) -> dict[str, Any]:
    """The graph's inputs and output as the manifest's ``extra`` describes them."""
    return {
        "inputs": {
            INPUT_NUM: {"dtype": "float32", "shape": ["N", len(numeric)]},
            INPUT_CAT: {"dtype": "string", "shape": ["N", len(categorical)]},
        },
        "output": {"name": OUTPUT_SCORE, "dtype": "float32", "shape": ["N"]},
        "numeric_features": list(numeric),
        "categorical_features": list(categorical),
    }


def encoder_vocab(manifest: Manifest) -> dict[str, frozenset[str]]:
    """``extra[ENCODER_CATEGORIES]`` as sets per feature (empty when the manifest does not say
    or says something else than a mapping of lists)."""
    cats = manifest.extra.get(ENCODER_CATEGORIES)
    if not isinstance(cats, Mapping):
        return {}
    return {
        str(name): frozenset(str(v) for v in values)
        for name, values in cats.items()
        if isinstance(values, list)
    }
