"""The benchmark's own parts work (the numbers are in docs/BENCHMARKS.md, not asserted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rankswap import featurespec as fs
from rankswap_dev.bench_ranker import harness, seed
from rankswap_dev.bench_ranker.data import feature_tables
from rankswap_dev.bench_ranker.model import tree_model
from rankswap_ranker.bundle import check_signature

pytestmark = pytest.mark.timeout(60)


def test_synthetic_model_has_the_ranker_signature() -> None:
    session = ort.InferenceSession(tree_model(trees=3, leaves=4))
    check_signature(session, "synthetic")
    n = 7
    num = np.zeros((n, len(fs.NUMERIC_FEATURES)), dtype=np.float32)
    cat = np.full((n, len(fs.CATEGORICAL_FEATURES)), "v1", dtype=object)
    (scores,) = session.run(["score"], {"num": num, "cat": cat})
    assert scores.shape == (n,)


def test_seed_comparison_runs_on_a_small_table(tmp_path: Path) -> None:
    tables = feature_tables(3000)
    tables.write(tmp_path / "features")
    result = seed.compare(tmp_path / "features", rows=2000)
    assert result["rows"] == 2000
    assert result["lookup_ratio"] > 0 and result["reload_ratio"] > 0


def test_summarise_counts_errors_and_percentiles() -> None:
    reqs = [[0.0, 0.001, 200], [0.1, 0.002, 200], [0.2, 0.010, 503]]
    doc = harness.summarise(reqs, elapsed=1.0)
    assert doc["requests"] == 3 and doc["errors"] == 1 and doc["rps"] == 3
    assert 1.0 <= doc["p50_ms"] <= 10.0


def test_real_section_picks_tenants_by_ratio() -> None:
    from rankswap_dev.bench_ranker.real import pick_tenants

    sizes = {"t001": 1371, "t002": 248, "t003": 33, "t004": 28, "t005": 188, "t006": 770, "t7": 0}
    assert pick_tenants(sizes) == {"~100": "t005", "~1000": "t006", "largest": "t001"}
    assert pick_tenants({"a": 5}) == {"~100": "a", "~1000": "a", "largest": "a"}
