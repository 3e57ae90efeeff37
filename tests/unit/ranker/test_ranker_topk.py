"""The compiled top-k pass chooses exactly what numpy's reference chooses (score first, then the
smaller item id, also at the cut), and hands NaN scores to the reference."""

from __future__ import annotations

import numpy as np
import pytest

from rankswap_ranker import topk

pytestmark = pytest.mark.timeout(240)  # the kernel's first compile in a fresh checkout


@pytest.fixture(scope="module")
def kernel() -> object:
    from rankswap_ranker import topk_kernel

    assert topk.compiled() is topk_kernel.choose
    return topk_kernel.top_k


def test_the_compiled_pass_chooses_as_the_reference(kernel: object) -> None:
    from rankswap_ranker.topk_kernel import top_k

    rng = np.random.default_rng(3)
    cases = 0
    for _ in range(600):
        n = int(rng.integers(1, 900))
        levels = int(rng.integers(1, 12))  # few levels: many ties, at the cut too
        scores = rng.integers(0, levels, n).astype(np.float32) * np.float32(0.25)
        if rng.random() < 0.5:
            scores += rng.normal(0, 1, n).astype(np.float32) * (rng.random(n) < 0.5)
        scores[rng.random(n) < 0.05] = -0.0  # signed zeros tie with 0.0
        ids = rng.permutation(10 * n)[:n].astype(np.int64)
        for k in (1, 3, 10, n - 1, n, n + 5):
            if k <= 0:
                continue
            want = topk.reference(scores, ids, k)
            got = top_k(scores, ids, k)
            assert got.tolist() == want.tolist(), (n, k)
            cases += 1
    assert cases > 3000


def test_the_compiled_choice_takes_the_pass_and_the_reference_for_nan(kernel: object) -> None:
    from rankswap_ranker.topk_kernel import top_k

    choose = topk.compiled()

    scores = np.array([0.5, 2.0, np.nan, 1.0, 2.0], dtype=np.float32)
    ids = np.array([10, 20, 30, 40, 5], dtype=np.int64)
    assert top_k(scores, ids, 3).shape == (0,)  # a NaN: the kernel declines
    assert choose(scores, ids, 3).tolist() == topk.reference(scores, ids, 3).tolist()
    finite = np.nan_to_num(scores, nan=-1.0)
    assert choose(finite, ids, 3).tolist() == [4, 1, 3]
    assert choose(finite, ids, 0).tolist() == []
    assert choose(finite[:0], ids[:0], 5).tolist() == []


def test_without_numba_top_k_stays_with_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "rankswap_ranker.topk_kernel", raising=False)
    monkeypatch.delattr(sys.modules["rankswap_ranker"], "topk_kernel", raising=False)
    assert topk.compiled() is topk.reference
