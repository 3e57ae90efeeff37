"""The model pipeline's training window on histories shorter than train-days + holdout-days."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from rankswap_training.errors import NoData
from rankswap_training.pipelines import TrainOptions, train_window

AS_OF = date(2026, 4, 1)
DEFAULTS = TrainOptions()  # 182 training days + a 28-day hold-out


def _history_of(days: int) -> date:
    """First expense day of a history of ``days`` days ending the day before AS_OF."""
    return AS_OF - timedelta(days=days)


def test_a_long_history_gets_the_requested_window() -> None:
    w = train_window(_history_of(400), AS_OF, DEFAULTS)
    assert (w.start, w.cutoff, w.days, w.clipped) == (
        date(2025, 9, 3),
        date(2026, 3, 4),
        182,
        False,
    )
    assert w.describe() == "2025-09-03 .. 2026-03-03 (182 days)"


@pytest.mark.parametrize(("history_days", "train_days"), [(60, 32), (150, 122), (210, 182)])
def test_a_short_history_trains_on_what_exists(history_days: int, train_days: int) -> None:
    first = _history_of(history_days)
    w = train_window(first, AS_OF, DEFAULTS)
    assert w.start == max(first, w.requested_start) and w.days == train_days
    assert w.clipped == (history_days < 210)
    if w.clipped:
        assert w.describe().endswith(f"({train_days} days; 182 asked, the history starts {first})")


@pytest.mark.parametrize("history_days", [30, 34, 20, 1])
def test_a_history_leaving_under_a_week_before_the_hold_out_is_refused(history_days: int) -> None:
    with pytest.raises(NoData) as info:
        train_window(_history_of(history_days), AS_OF, DEFAULTS)
    message = str(info.value)
    assert "\n" not in message and "use a smaller --holdout-days" in message
    assert f"the history starts {_history_of(history_days)}" in message


def test_a_smaller_hold_out_makes_a_30_day_history_trainable() -> None:
    w = train_window(_history_of(30), AS_OF, TrainOptions(holdout_days=7))
    assert (w.start, w.days, w.clipped) == (_history_of(30), 23, True)


def test_no_history_is_refused() -> None:
    with pytest.raises(NoData, match="no expenses before 2026-04-01"):
        train_window(None, AS_OF, DEFAULTS)
