"""Bundle validation: every way a bundle can be bad is refused before it could serve."""

from __future__ import annotations

import dataclasses
import math
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.unit.ranker.builders import (
    Published,
    onnx_model,
    publish_bundle,
    publish_model,
    tree_model,
)

from rankswap import featurespec as fs
from rankswap.artifacts import ChecksumMismatch, ManifestMissing, SchemaMismatch, WrongKind
from rankswap_ranker import bundle as bundles
from rankswap_ranker import treescore
from rankswap_ranker.errors import (
    BundleIncompatible,
    ModelInvalid,
    SmokeScoringFailed,
    error_record,
    translate,
)

pytestmark = pytest.mark.timeout(30)


def test_good_bundle_resolves_loads_and_scores(published: Published, cache_dir: Path) -> None:
    ref = bundles.resolve(published.model_uri, published.features_uri, cache_dir)
    assert ref.bundle_id == published.bundle_id
    assert Path(ref.model.local_dir).is_relative_to(cache_dir)
    bundle = bundles.load(ref)
    assert bundle.timings.total_s > 0
    assert bundle.tables.row_counts["item"] == 50


def test_cached_artifacts_are_reused(published: Published, cache_dir: Path) -> None:
    first = bundles.resolve(published.model_uri, published.features_uri, cache_dir)
    marker = Path(first.model.local_dir) / "model.onnx"
    mtime = marker.stat().st_mtime_ns
    # The same content through latest/ resolves to the same cached folder.
    again = bundles.resolve(published.latest_model_uri, published.latest_features_uri, cache_dir)
    assert again.bundle_id == first.bundle_id
    assert again.model.local_dir == first.model.local_dir
    assert marker.stat().st_mtime_ns == mtime


def test_checksum_mismatch_names_the_file(published: Published, cache_dir: Path) -> None:
    path = Path(published.model_uri.removeprefix("file://")) / "model.onnx"
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(ChecksumMismatch) as info:
        bundles.resolve(published.model_uri, published.features_uri, cache_dir)
    assert info.value.file == "model.onnx"
    assert error_record(info.value)["file"] == "model.onnx"


def test_missing_path_is_manifest_missing(published: Published, cache_dir: Path) -> None:
    missing = published.model_uri.replace("2026-11-20", "2020-01-01")
    with pytest.raises(ManifestMissing):
        bundles.resolve(missing, published.features_uri, cache_dir)


def test_model_and_features_swapped_is_wrong_kind(published: Published, cache_dir: Path) -> None:
    with pytest.raises(WrongKind):
        bundles.resolve(published.features_uri, published.model_uri, cache_dir)


def test_schema_mismatch(file_root: str, tmp_path: Path, cache_dir: Path) -> None:
    pub = publish_bundle(file_root, tmp_path / "src", item_ids=[1, 2], requires="9.9.9")
    with pytest.raises(SchemaMismatch) as info:
        bundles.resolve(pub.model_uri, pub.features_uri, cache_dir)
    assert translate(info.value).code == "bundle_incompatible"


def _resolve_with_model(
    file_root: str, tmp_path: Path, cache_dir: Path, model: bytes, when: date
) -> bundles.BundleRef:
    pub = publish_bundle(file_root, tmp_path / "src", item_ids=[1, 2, 3])
    publish_model(file_root, tmp_path / "src", model, as_of=when)
    return bundles.resolve(
        pub.model_uri.replace(pub.model_uri.rsplit("/", 1)[1], when.isoformat()),
        pub.features_uri,
        cache_dir,
    )


def test_corrupt_model_is_model_invalid(file_root: str, tmp_path: Path, cache_dir: Path) -> None:
    ref = _resolve_with_model(file_root, tmp_path, cache_dir, b"\x00not onnx", date(2026, 11, 21))
    with pytest.raises(ModelInvalid):
        bundles.load(ref)


@pytest.mark.parametrize(
    "model",
    [
        onnx_model(num_width=len(fs.NUMERIC_FEATURES) - 1),
        onnx_model(cat_width=len(fs.CATEGORICAL_FEATURES) + 1),
        onnx_model(output="probability"),
    ],
    ids=["num-width", "cat-width", "output-name"],
)
def test_model_signature_must_match_the_feature_schema(
    file_root: str, tmp_path: Path, cache_dir: Path, model: bytes
) -> None:
    ref = _resolve_with_model(file_root, tmp_path, cache_dir, model, date(2026, 11, 22))
    with pytest.raises(BundleIncompatible):
        bundles.load(ref)


def test_model_giving_non_finite_scores_fails_the_smoke_scoring(
    file_root: str, tmp_path: Path, cache_dir: Path
) -> None:
    ref = _resolve_with_model(
        file_root, tmp_path, cache_dir, onnx_model(weight=math.nan), date(2026, 11, 23)
    )
    with pytest.raises(SmokeScoringFailed):
        bundles.load(ref)


@pytest.mark.parametrize("choice", ["reference", "compiled"])
def test_top_k_breaks_ties_by_item_id(choice: str) -> None:
    from rankswap_ranker import topk

    top_k_indices = topk.reference if choice == "reference" else topk.compiled()
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0], dtype=np.float32)
    ids = np.array([10, 40, 20, 30, 50], dtype=np.int64)
    assert top_k_indices(scores, ids, 3).tolist() == [2, 1, 4]
    assert top_k_indices(scores, ids, 99).tolist() == [2, 1, 4, 3, 0]
    assert top_k_indices(scores[:0], ids[:0], 5).tolist() == []


@pytest.mark.parametrize("choice", ["reference", "compiled"])
def test_top_k_breaks_a_tie_at_the_cut_by_item_id(choice: str) -> None:
    """Rows tied at the k-th score, some inside the cut and some outside: the smaller ids make
    it, whatever order ``argpartition`` leaves them in."""
    from rankswap_ranker import topk

    top_k_indices = topk.reference if choice == "reference" else topk.compiled()

    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        scores = rng.integers(0, 4, n).astype(np.float32)  # many ties
        ids = rng.permutation(1000)[:n].astype(np.int64)
        k = int(rng.integers(1, n + 1))
        want = sorted(range(n), key=lambda i: (-scores[i], ids[i]))[:k]
        assert top_k_indices(scores, ids, k).tolist() == want


def _tree_bundle(file_root: str, tmp_path: Path, cache_dir: Path, **kw: bool) -> bundles.Bundle:
    pub = publish_bundle(
        file_root, tmp_path, item_ids=np.arange(1, 51), model_bytes=tree_model(**kw)
    )
    return bundles.load(bundles.resolve(pub.model_uri, pub.features_uri, cache_dir))


def _rows(bundle: bundles.Bundle) -> fs.ModelInput:
    cat = np.array([["travel", "x"], ["meals", "y"], ["supplies", ""], ["nope", "x"]] * 4)
    cat = np.concatenate([cat, np.full((16, len(fs.CATEGORICAL_FEATURES) - 2), "")], 1)
    num = np.zeros((16, len(fs.NUMERIC_FEATURES)), dtype=np.float32)
    num[:, fs.NUMERIC_FEATURES.index("item_cnt_365d")] = np.arange(16) % 5
    return fs.ModelInput(num, cat.astype(object), 16, 0, 0, 0, 0, 0)


def test_a_tree_ensemble_is_scored_alone_behind_the_graphs_encoders(
    file_root: str, tmp_path: Path, cache_dir: Path
) -> None:
    """The training pipeline's graph shape: the tree ensemble scores encoded rows by itself,
    with exactly the scores of the whole graph (checked at load, and here on other rows)."""
    bundle = _tree_bundle(file_root, tmp_path, cache_dir)
    assert bundle.trees is not None
    rows = _rows(bundle)
    scores = bundle.score(rows)
    np.testing.assert_array_equal(scores, bundle.score_whole(rows))
    assert len(set(scores.tolist())) > 2  # both trees and the unseen category matter


def test_trees_that_do_not_score_as_the_graph_are_not_used(
    file_root: str, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A split whose encoding differs from the graph's fails the parity check at load: the
    whole graph scores. A graph of another shape is never split."""
    real_split = treescore.split

    def wrong_codes(model: bytes, *args: Any) -> treescore.TreeScorer | None:
        trees = real_split(model, *args)
        assert trees is not None
        enc = trees.encoders[0]
        swapped = dataclasses.replace(enc, codes={k: 2.0 - v for k, v in enc.codes.items()})
        return dataclasses.replace(trees, encoders=(swapped, *trees.encoders[1:]))

    monkeypatch.setattr(treescore, "split", wrong_codes)
    bundle = _tree_bundle(file_root, tmp_path, cache_dir)
    assert bundle.trees is None
    rows = _rows(bundle)
    np.testing.assert_array_equal(bundle.score(rows), bundle.score_whole(rows))
    monkeypatch.setattr(treescore, "split", real_split)
    assert treescore.split(onnx_model(), len(fs.NUMERIC_FEATURES), None) is None
    assert treescore.split(b"\xff\xff not a model", len(fs.NUMERIC_FEATURES), None) is None
