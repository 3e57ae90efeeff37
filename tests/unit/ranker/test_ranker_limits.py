"""BodyLimit's body time, in-process on the real event loop: one timer for every request in
flight, 408 for a body that stops arriving, any other cancellation left alone.

The same 408 through a real uvicorn server: tests/integration/ranker/test_ranker_http.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import pytest

from rankswap_ranker.limits import BodyLimit

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

SCOPE: dict[str, Any] = {"type": "http", "method": "POST", "path": "/", "headers": []}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    body = (await receive())["body"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _body(data: bytes) -> Any:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": data, "more_body": False}

    return receive


async def _never() -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _call(limit: BodyLimit, receive: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await limit(SCOPE, receive, send)
    return sent


async def test_requests_arm_no_timer_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hundred bodies read one after another arm the loop's timer once (asyncio.timeout
    would arm and cancel one per request)."""
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_at = loop.call_at

    def counting(when: float, *args: Any, **kwargs: Any) -> Any:
        armed.append(when)
        return call_at(when, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting)
    limit = BodyLimit(_echo, max_bytes=100, timeout_s=60.0)
    for i in range(100):
        sent = await _call(limit, _body(b"%d" % i))
        assert sent[1]["body"] == b"%d" % i
    assert len(armed) == 1
    assert not limit.deadlines._due  # nothing left behind


async def test_a_body_that_stops_arriving_is_408_while_others_pass() -> None:
    limit = BodyLimit(_echo, max_bytes=100, timeout_s=0.2)

    async def slow_then_fine() -> list[list[dict[str, Any]]]:
        stuck = asyncio.create_task(_call(limit, _never))
        fine = [await _call(limit, _body(b"ok")) for _ in range(3)]
        return [await stuck, *fine]

    stuck, *fine = await slow_then_fine()
    assert stuck[0]["status"] == 408
    assert json.loads(stuck[1]["body"])["error"] == "request_timeout"
    assert all(f[0]["status"] == 200 and f[1]["body"] == b"ok" for f in fine)
    # a later stuck body gets its own full time, and the timer is re-armed for it
    again = await _call(limit, _never)
    assert again[0]["status"] == 408
    assert not limit.deadlines._due and not limit.deadlines._expired


async def test_deadlines_of_requests_in_flight_expire_in_order() -> None:
    """Two stuck bodies started 0.1 s apart: each is answered 408 at its own deadline (the
    timer re-armed for the second), the first before the second."""
    limit = BodyLimit(_echo, max_bytes=100, timeout_s=0.3)
    done: list[str] = []

    async def stuck(name: str) -> None:
        sent = await _call(limit, _never)
        assert sent[0]["status"] == 408
        done.append(name)

    first = asyncio.create_task(stuck("first"))
    await asyncio.sleep(0.1)
    second = asyncio.create_task(stuck("second"))
    await first
    assert done == ["first"]
    await second
    assert done == ["first", "second"]


async def test_another_cancellation_is_not_turned_into_a_408() -> None:
    """A request cancelled from outside (the server shutting down, the client gone) while its
    body is read stays cancelled: no response, its deadline forgotten."""
    limit = BodyLimit(_echo, max_bytes=100, timeout_s=60.0)
    sent: list[dict[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    task = asyncio.create_task(limit(SCOPE, _never, send))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sent == []
    assert not limit.deadlines._due
