"""The one poll loop of the harnesses, the tests and the benchmarks: :func:`wait_until`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """What was awaited did not happen in time; says what and what was last observed."""

    def __init__(self, what: str, timeout: float, last: object, detail: str = "") -> None:
        self.what, self.timeout, self.last = what, timeout, last
        message = f"{what}: not reached within {timeout:g} s; last observation: {last!r}"
        super().__init__(f"{message}\n{detail}" if detail else message)


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.1,
    *,
    what: str,
    ignore: tuple[type[Exception], ...] = (),
    detail: Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value; return it.

    A falsy return value, or an exception of one of the types in ``ignore``, is the last
    observation; any other exception propagates at once (use that to give up early, e.g. when
    the process being awaited has exited). After ``timeout`` seconds :class:`WaitTimeout` is
    raised with ``what``, the last observation and, if given, ``detail()`` (a log tail, a
    status document). The predicate is called at least once, even with ``timeout <= 0``.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = predicate()
        except ignore as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        if time.monotonic() >= deadline:
            raise WaitTimeout(what, timeout, last, detail() if detail is not None else "")
        time.sleep(interval)
