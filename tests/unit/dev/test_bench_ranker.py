"""The benchmark's own parts work (the numbers are in docs/BENCHMARKS.md, not asserted)."""

from __future__ import annotations

from datetime import date
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


def test_demo_rank_bodies_leave_out_unknown_vendors_and_employees() -> None:
    """Expenses without a vendor (NULL, read by pandas as NaN) make valid rank requests; the
    demo's sampler crashed on them (``int(nan)``) once it read past the first rows."""
    from rankswap_dev.demo import rank_body
    from rankswap_ranker.schemas import RankRequest

    when = date(2026, 7, 1)
    row = {"tenant_id": "t001", "employee_id": 3.0, "vendor_id": float("nan"),
           "description": None, "amount": 1200, }  # fmt: skip
    body = rank_body(row, when)
    assert body["context"] == {"employee_id": 3, "description": "", "amount": 1200.0,
                               "date": "2026-07-01"}  # fmt: skip
    RankRequest.model_validate(body)
    full = rank_body({**row, "vendor_id": 40, "description": "taxi"}, when)
    assert full["context"]["vendor_id"] == 40 and full["context"]["description"] == "taxi"
