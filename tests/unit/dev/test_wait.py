"""wait_until: returns the first truthy observation, or says what it waited for and saw last."""

from __future__ import annotations

import itertools

import pytest

from rankswap_dev.wait import WaitTimeout, wait_until

pytestmark = pytest.mark.timeout(30)


def test_returns_the_first_truthy_value() -> None:
    values = iter([None, 0, {}, {"ready": True}, {"later": 1}])
    assert wait_until(lambda: next(values), 10, 0, what="ready") == {"ready": True}


def test_timeout_names_what_and_the_last_observation() -> None:
    count = itertools.count()
    with pytest.raises(WaitTimeout) as caught:
        wait_until(lambda: next(count) < 0, 0.05, 0.01, what="pods ready", detail=lambda: "log")
    err = caught.value
    assert isinstance(err, TimeoutError)
    assert err.what == "pods ready" and err.last is False and err.timeout == 0.05
    assert str(err).startswith("pods ready: not reached within 0.05 s; last observation: False")
    assert str(err).endswith("\nlog")


def test_ignored_exceptions_are_observations_and_others_propagate() -> None:
    def flaky() -> bool:
        raise ConnectionError("refused")

    with pytest.raises(WaitTimeout) as caught:
        wait_until(flaky, 0, 0, what="healthz", ignore=(ConnectionError,))
    assert isinstance(caught.value.last, ConnectionError)
    assert "ConnectionError('refused')" in str(caught.value)

    def exited() -> bool:
        raise RuntimeError("ranker exited with 1")

    with pytest.raises(RuntimeError, match="exited with 1"):
        wait_until(exited, 10, 0, what="healthz", ignore=(ConnectionError,))


def test_the_predicate_runs_once_even_without_time() -> None:
    calls: list[int] = []

    def once() -> int:
        calls.append(1)
        return len(calls)

    assert wait_until(once, 0, what="once") == 1
