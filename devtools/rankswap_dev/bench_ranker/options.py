"""Command-line values of the benchmarks that are lists or bounded numbers, validated up front:
a bad value is a clear ``argparse`` error before anything starts (no half-run benchmark)."""

from __future__ import annotations

import argparse
import math

MAX_VALUES = 10
"""At most this many values in one list option (each one is a run of its own)."""

MAX_RATE = 20_000.0
"""Offered rates above this (req/s) are beyond one worker by two orders of magnitude."""

MAX_GAP_MS = 1_000.0
"""Gaps between in-process calls above this (ms) would only measure sleeping."""

MAX_DURATION_S = 600.0


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{what}: {text!r} is not a finite number")
    return value


def _number_list(
    text: str, what: str, low: float, high: float, *, low_inclusive: bool
) -> list[float]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise argparse.ArgumentTypeError(f"{what}: {text!r} is not a comma-separated list")
    if len(parts) > MAX_VALUES:
        raise argparse.ArgumentTypeError(
            f"{what}: {len(parts)} values, at most {MAX_VALUES} (each is a run of its own)"
        )
    values = [_number(p, what) for p in parts]
    for v in values:
        if v > high or v < low or (v == low and not low_inclusive):
            bound = f"{'[' if low_inclusive else '('}{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"{what}: {v:g} is outside {bound}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{what}: {text!r} repeats a value")
    return values


def rates(text: str) -> list[float]:
    """``--open-rates``: offered request rates (req/s), each in (0, MAX_RATE]."""
    return _number_list(text, "offered rates (req/s)", 0.0, MAX_RATE, low_inclusive=False)


def gaps_ms(text: str) -> list[float]:
    """``--gap-ms``: pauses before each in-process call (ms), each in [0, MAX_GAP_MS]."""
    return _number_list(text, "gaps (ms)", 0.0, MAX_GAP_MS, low_inclusive=True)


def duration_s(text: str) -> float:
    """A run's length in seconds, in (0, MAX_DURATION_S]."""
    value = _number(text, "duration (s)")
    if not 0 < value <= MAX_DURATION_S:
        raise argparse.ArgumentTypeError(
            f"duration (s): {value:g} is outside (0, {MAX_DURATION_S:g}]"
        )
    return value
