"""Text terms and integer keys: the tokenizer, the vocabulary entries that stand for a vendor
industry or an employee department, integer days, composite pair keys."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

import numpy as np
import numpy.typing as npt

from .schema import EPOCH_ORDINAL, I64, MAX_TERMS

_SPLIT = re.compile(r"[^\w]+", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\u30fc]")


def tokenize(text: str) -> list[str]:
    """Terms of a description: NFKC + lower case, split on non-word characters; runs that
    contain Japanese characters yield character bigrams (no dictionary needed), other runs yield
    the word. Order-preserving, de-duplicated, at most ``MAX_TERMS``."""
    norm = unicodedata.normalize("NFKC", text).lower()
    out: dict[str, None] = {}
    for word in _SPLIT.split(norm):
        if not word or word.isdigit():
            continue
        if _CJK.search(word):
            if len(word) == 1:
                out[word] = None
            for i in range(len(word) - 1):
                out[word[i : i + 2]] = None
        elif len(word) > 1:
            out[word] = None
    return list(out)[:MAX_TERMS]


def industry_term(industry: str) -> str:
    """The vocabulary entry standing for a vendor industry (in the ``term_cat`` table)."""
    return f"\x01i:{industry}"


def department_term(department: str) -> str:
    """The vocabulary entry standing for an employee department (in the ``term_cat`` table)."""
    return f"\x01d:{department}"


def to_day(d: date) -> int:
    """Integer days since 1970-01-01."""
    return d.toordinal() - EPOCH_ORDINAL


def pair_key(a: npt.ArrayLike, b: npt.ArrayLike) -> I64:
    """Composite int64 key ``(a << 32) | b`` for ids in ``[0, 2**31)``; negative a or b (unknown)
    yields -1, which no table contains."""
    a64 = np.asarray(a, dtype=np.int64)
    b64 = np.asarray(b, dtype=np.int64)
    key = (a64 << 32) | b64
    bad = (a64 < 0) | (b64 < 0)
    if bool(np.any(bad)):
        key = np.where(bad, np.int64(-1), key)
    return key


def pair_key_nonneg(a: I64, b: I64) -> I64:
    """``pair_key`` for b >= 0 (item / category ids): a negative ``a`` (unknown employee,
    vendor or term) gives a negative key, which matches no table row, so no fix-up is needed."""
    out: I64 = (a << 32) | b
    return out
