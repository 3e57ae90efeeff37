"""The supervisor's restart back-off: a pure function of the death streak and the uptime."""

from __future__ import annotations

import pytest

from rankswap_ranker.server import HEALTHY_AFTER_S, RESTART_BACKOFF_S, restart_delay

pytestmark = pytest.mark.timeout(10)


def test_a_worker_that_keeps_dying_waits_longer_each_time_up_to_the_cap() -> None:
    streak, delays = 0, []
    for _ in range(len(RESTART_BACKOFF_S) + 2):
        delay, streak = restart_delay(streak, uptime_s=1.0)
        delays.append(delay)
    assert delays == [*RESTART_BACKOFF_S, RESTART_BACKOFF_S[-1], RESTART_BACKOFF_S[-1]]


def test_a_healthy_period_resets_the_back_off() -> None:
    """After many deaths in a pod's lifetime, a worker that lived long enough restarts at once
    (it used to wait the longest delay forever, so /readyz failed ~12 s on every later death)."""
    clock, started, streak = 0.0, 0.0, 0
    for _ in range(6):  # six quick deaths: the streak reaches the cap
        clock += 2.0
        delay, streak = restart_delay(streak, clock - started)
        clock += delay
        started = clock
    assert delay == RESTART_BACKOFF_S[-1]
    clock += HEALTHY_AFTER_S  # then minutes of health
    delay, streak = restart_delay(streak, clock - started)
    assert (delay, streak) == (RESTART_BACKOFF_S[0], 1)
    clock += delay
    started = clock
    delay, streak = restart_delay(streak, 0.5)  # dies again at once: the streak grows again
    assert (delay, streak) == (RESTART_BACKOFF_S[1], 2)


def test_the_healthy_period_is_a_bound_not_a_rate() -> None:
    assert restart_delay(3, HEALTHY_AFTER_S - 0.01)[0] == RESTART_BACKOFF_S[3]
    assert restart_delay(3, HEALTHY_AFTER_S)[0] == RESTART_BACKOFF_S[0]
