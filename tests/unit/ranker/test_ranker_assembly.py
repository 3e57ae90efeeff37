"""A bundle assembles with the compiled kernels only when they give the numpy reference's bits
on requests drawn from its own tables (``rankswap_ranker.assembly``); otherwise, or without the
kernels, numpy assembles, and the bundle serves either way."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from tests.unit.ranker.builders import Published

from rankswap import featurespec as fs
from rankswap.productdb import ProductDB
from rankswap_ranker import assembly, topk
from rankswap_ranker import bundle as bundles
from rankswap_ranker.ranking import RankQuery, rank
from rankswap_training import features
from rankswap_training.features import build_tables

pytestmark = pytest.mark.timeout(240)  # the kernels' first compile in a fresh checkout


@pytest.fixture(scope="module")
def world_tables(small_db_url: str) -> fs.FeatureTables:
    with ProductDB(small_db_url) as db:
        return build_tables(features.load_history(db, before=date(2026, 3, 31)), date(2026, 3, 28))


def test_the_parity_requests_exercise_every_feature(world_tables: fs.FeatureTables) -> None:
    """The check at load is only as good as its requests: on a generated world's tables they
    give every numeric feature a non-zero value somewhere, and unknown items, employees and
    vendors their defaults."""
    cands, contexts = assembly.parity_requests(world_tables)
    inputs = [fs.assemble(ctx, cands, world_tables) for ctx in contexts]
    seen = np.zeros(len(fs.NUMERIC_FEATURES), dtype=bool)
    for mi in inputs:
        seen |= (mi.num != 0).any(axis=0)
    assert [f for f, s in zip(fs.NUMERIC_FEATURES, seen, strict=True) if not s] == []
    assert any(mi.item_default_rows for mi in inputs)
    assert any(mi.unknown_employee_rows for mi in inputs)
    assert any(mi.unknown_vendor_rows for mi in inputs)


def test_the_compiled_fill_passes_on_a_generated_world(world_tables: fs.FeatureTables) -> None:
    from rankswap.featurespec import kernels

    assert assembly.parity_checked_fill(world_tables, "features test") is kernels.fill


def test_a_fill_that_differs_by_one_bit_is_not_used(
    world_tables: fs.FeatureTables, caplog: pytest.LogCaptureFixture
) -> None:
    compiled = fs.compiled_fill()

    def off_by_one_bit(req: fs.ExpenseParts, num: npt.NDArray[np.float32]) -> None:
        compiled(req, num)
        num.view(np.uint32)[-1, fs.NUMERIC_FEATURES.index("cat_amount_z")] ^= 1

    caplog.set_level(logging.WARNING, "rankswap.ranker.assembly")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fs, "compiled_fill", lambda: off_by_one_bit)
        assert assembly.parity_checked_fill(world_tables, "features v1") is fs.fill_numpy
    assert "features v1: the compiled assembly does not give numpy's model input" in caplog.text


def test_a_fill_that_raises_is_not_used(
    world_tables: fs.FeatureTables, caplog: pytest.LogCaptureFixture
) -> None:
    def refuses(req: object, num: object) -> None:
        raise TypeError("No matching definition for argument type(s) array(float64, 2d, A)")

    caplog.set_level(logging.WARNING, "rankswap.ranker.assembly")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fs, "compiled_fill", lambda: refuses)
        assert assembly.parity_checked_fill(world_tables, "features v2") is fs.fill_numpy
    assert "features v2: the compiled assembly failed (No matching definition" in caplog.text


def test_without_the_kernels_numpy_assembles_and_the_bundle_serves(
    published: Published, cache_dir: Path, db: ProductDB, caplog: pytest.LogCaptureFixture
) -> None:
    def unavailable() -> fs.Fill:
        raise fs.KernelsUnavailable("ModuleNotFoundError: No module named 'numba'")

    caplog.set_level(logging.INFO, "rankswap.ranker.assembly")
    ref = bundles.resolve(published.model_uri, published.features_uri, cache_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fs, "compiled_fill", unavailable)
        plain = bundles.load(ref)
    assert plain.fill is fs.fill_numpy
    assert "the feature assembly is not compiled (ModuleNotFoundError" in caplog.text
    compiled = bundles.load(ref)
    assert compiled.fill is not fs.fill_numpy
    assert compiled.top_k is topk.compiled() and plain.top_k is topk.compiled()
    checked_only = bundles.load(ref, compile_assembly=False)  # the supervisor's validation
    assert checked_only.fill is fs.fill_numpy and checked_only.top_k is topk.reference
    q = RankQuery("acme", 1, None, "taxi to the airport", 1234.0, date(2026, 11, 20), 10)
    a, b = rank(plain, db, q), rank(compiled, db, q)
    assert a.body == b.body  # the same answer, byte for byte
    assert b.scores is not None and np.array_equal(a.scores, b.scores)  # type: ignore[arg-type]


def test_kernel_cache_leaves_a_given_numba_cache_dir_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv(assembly.KERNEL_CACHE_SEED, str(tmp_path / "seed"))
    assert assembly.kernel_cache(tmp_path / "cache") == tmp_path / "mine"
    assert not (tmp_path / "cache").exists()


def test_kernel_cache_without_a_seed_is_numbas_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.delenv(assembly.KERNEL_CACHE_SEED, raising=False)
    assert assembly.kernel_cache(tmp_path / "cache") is None
    assert "NUMBA_CACHE_DIR" not in os.environ


@pytest.mark.timeout(400)  # two fresh compiles in subprocesses
def test_the_images_compiled_kernels_are_copied_once_and_loaded_not_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in the image: the kernels compiled at build into a seed directory (``NUMBA_CACHE_DIR``
    there); the pod's supervisor copies it to its cache directory and points numba there, so a
    worker loads the machine code (cache hits) instead of compiling."""
    seed = tmp_path / "seed"
    probe = (
        "from rankswap.featurespec import kernels as k; "
        "print(sum(k.numeric.stats.cache_hits.values()), sum(k.text.stats.cache_hits.values()))"
    )
    build = dict(os.environ, NUMBA_CACHE_DIR=str(seed))
    subprocess.run([sys.executable, "-c", probe], env=build, check=True, timeout=300)
    assert any(seed.rglob("*.nbi"))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv(assembly.KERNEL_CACHE_SEED, str(seed))
    cache = tmp_path / "cache"
    cache.mkdir()
    target = assembly.kernel_cache(cache)
    assert target == cache / "numba" and os.environ["NUMBA_CACHE_DIR"] == str(target)
    copied = sorted(p.relative_to(target) for p in target.rglob("*"))
    assert copied == sorted(p.relative_to(seed) for p in seed.rglob("*"))
    (target / "marker").write_text("kept")
    assert assembly.kernel_cache(cache) == target  # once: an existing copy is kept
    assert (target / "marker").exists()
    out = subprocess.run(
        [sys.executable, "-c", probe], env=dict(os.environ), capture_output=True, text=True,
        check=True, timeout=300,
    )  # fmt: skip
    assert out.stdout.split() == ["1", "1"], out.stderr  # loaded from the copy, not compiled
