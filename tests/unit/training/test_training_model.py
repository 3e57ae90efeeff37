"""ONNX export: one graph (encoders + model), inputs num/cat, output score; parity."""

from __future__ import annotations

import numpy as np
import pytest

from rankswap import featurespec as fs
from rankswap_training import model
from rankswap_training.errors import ParityError


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    num = rng.normal(size=(n, len(fs.NUMERIC_FEATURES))).astype(np.float32)
    cat = np.empty((n, len(fs.CATEGORICAL_FEATURES)), dtype=object)
    for j in range(cat.shape[1]):
        cat[:, j] = rng.choice([f"c{j}-{k}" for k in range(6)] + ["旅費交通費"], n)
    y = ((num[:, 0] + (cat[:, 0] == "c0-1") + rng.normal(size=n)) > 1.2).astype(np.float32)
    return num, cat, y


@pytest.mark.parametrize(
    "spec",
    [model.ModelSpec("lgbm_lambdarank", 12, 7), model.ModelSpec("sklearn_hgb", 12, 7)],
    ids=lambda s: s.label,
)
def test_onnx_graph_matches_native_model(spec: model.ModelSpec) -> None:
    num, cat, y = _data(2000, 0)
    pipe = model.fit(spec, model.feature_frame(num, cat), y, np.full(100, 20), seed=0)
    onx = model.to_onnx(pipe)
    assert [i.name for i in onx.graph.input] == ["num", "cat"]
    assert [o.name for o in onx.graph.output] == ["score"]
    sess = model.session(onx.SerializeToString())
    test_num, test_cat, _ = _data(500, 1)
    test_cat[:50, 0] = "never seen"  # unknown categories -> -1, as in scikit-learn
    test_cat[50:80, 1] = ""
    scores = model.onnx_scores(sess, test_num, test_cat)
    assert scores.shape == (500,) and scores.dtype == np.float32
    assert model.parity(pipe, sess, test_num, test_cat) <= model.PARITY_TOLERANCE
    assert set(model.encoder_categories(pipe)) == set(fs.CATEGORICAL_FEATURES)


def test_parity_failure_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    num, cat, y = _data(600, 2)
    spec = model.ModelSpec("lgbm_lambdarank", 5, 7)
    pipe = model.fit(spec, model.feature_frame(num, cat), y, np.full(30, 20), seed=0)
    sess = model.session(model.to_onnx(pipe).SerializeToString())
    monkeypatch.setattr(model, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(ParityError, match="not publishing"):
        model.parity(pipe, sess, num, cat)


def test_float32_floor_is_the_largest_float32_not_above() -> None:
    for thr in (0.512699991464615, 0.5127, 1.0, -0.3, 2.5, 1e-35, -1e-35, 0.0, 123456789.5):
        t = model.float32_floor(thr)
        assert np.float32(t) == t and t <= thr
        assert float(np.nextafter(np.float32(t), np.float32(np.inf))) > thr


@pytest.mark.parametrize(
    "spec",
    [model.ModelSpec("lgbm_lambdarank", 20, 7), model.ModelSpec("sklearn_hgb", 20, 7)],
    ids=lambda s: s.label,
)
def test_parity_on_grid_values_between_the_training_values(spec: model.ModelSpec) -> None:
    """A ratio on a 1e-4 grid: the training rows hold only every other grid value, so a split
    threshold is the midpoint of k and k+2 in float64, i.e. (nearly) the grid value k+1, which
    rounds to float32(k+1) *above* the double threshold. Rows at k+1 (serving, the parity rows)
    must still take the native model's branch (0.136 on the test world before the fix)."""
    rng = np.random.default_rng(3)
    num, cat, _ = _data(4000, 3)
    num[:, 0] = (np.round(rng.integers(2000, 3000, size=len(num)) * 2e-4, 4)).astype(np.float32)
    y = ((num[:, 0] > 0.5) ^ (rng.random(len(num)) < 0.1)).astype(np.float32)
    pipe = model.fit(spec, model.feature_frame(num, cat), y, np.full(200, 20), seed=0)
    sess = model.session(model.to_onnx(pipe).SerializeToString())
    test_num, test_cat, _ = _data(2000, 4)
    odd = np.arange(4000, 6000, 1) * 1e-4  # every grid value, the unseen odd ones included
    test_num[:, 0] = np.round(odd, 4).astype(np.float32)
    assert model.parity(pipe, sess, test_num, test_cat) <= model.PARITY_TOLERANCE
