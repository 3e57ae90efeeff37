"""The compiled top-k pass of :mod:`rankswap_ranker.topk` (numba; imported by ``topk.compiled``).
One signature, compiled at import (cached on disk as ``featurespec.kernels`` is): read-only
arrays of any layout, so a call never compiles."""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt
from numba import types

from rankswap_ranker.topk import Ids, Scores, reference


@numba.njit(cache=True, nogil=True, inline="always")
def _better(scores: Scores, ids: Ids, r: int, q: int) -> bool:
    """Row ``r`` ranks before row ``q``: a higher score, or the same and a smaller item id."""
    return bool(scores[r] > scores[q] or (scores[r] == scores[q] and ids[r] < ids[q]))


@numba.njit(
    types.intp[::1](
        types.Array(types.float32, 1, "A", readonly=True),
        types.Array(types.int64, 1, "A", readonly=True),
        types.int64,
    ),
    cache=True,
    nogil=True,
)
def top_k(scores: Scores, ids: Ids, k: int) -> npt.NDArray[np.intp]:
    """The rows of the ``k`` best scores, best first (ties: the smaller item id); an empty array
    when a score is NaN."""
    n = scores.shape[0]
    k = min(k, n)
    best = np.empty(k, np.intp)
    m = 0
    for r in range(n):
        if np.isnan(scores[r]):
            return np.empty(0, np.intp)
        if m == k:
            if k == 0 or not _better(scores, ids, r, best[k - 1]):
                continue
            m -= 1  # the k-th drops out
        j = m  # insert r in order
        while j > 0 and _better(scores, ids, r, best[j - 1]):
            best[j] = best[j - 1]
            j -= 1
        best[j] = r
        m += 1
    return best


def choose(scores: Scores, item_ids: Ids, k: int) -> npt.NDArray[np.intp]:
    """:data:`rankswap_ranker.topk.TopK` with :func:`top_k`; a NaN score (which it declines)
    goes to the numpy reference."""
    if k > 0:
        best = top_k(scores, item_ids, k)
        if best.shape[0] == min(k, scores.shape[0]):
            return best
    result: npt.NDArray[np.intp] = reference(scores, item_ids, k)
    return result
