"""Request limits of both ports: body size and body time (ASGI), header and idle time (protocol).

* :class:`BodyLimit` reads a request's body, at most ``max_bytes`` of it, before the app sees
  it. A ``Content-Length`` over the limit is answered 413 at once, without reading a byte of the
  body; a chunked body is answered 413 as soon as it passes the limit. A body that does not
  arrive within ``timeout_s`` is answered 408. Both in the error envelope, with
  ``Connection: close`` (the rest of the body is never read). Memory per request is bounded by
  the limit, whatever the client sends. The body times of all requests in flight share one
  timer (:class:`Deadlines`): a request arms none of its own.

The header and idle time of a connection are the protocol's (:mod:`rankswap_ranker.protocol`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rankswap_ranker.errors import BodyTooLarge, RankerError, RequestTimeout, error_response


class Deadlines:
    """The body-read deadlines of the requests in flight, behind one event-loop timer.

    ``asyncio.timeout`` arms (and cancels) a timer per request, ~10 µs of a worker's CPU per
    request (uvloop); here a request only notes its task and deadline. The one timer fires at
    the earliest deadline noted while it was idle, cancels the tasks whose deadline has passed
    (remembered as *expired*, so the reader can tell this cancellation from any other), and
    re-arms for the earliest deadline left. Deadlines are exact, as with ``asyncio.timeout``:
    a deadline later than the armed timer is looked at when the timer fires, an earlier one
    re-arms it."""

    def __init__(self) -> None:
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def start(self, task: asyncio.Task[Any], due: float) -> None:
        """Cancel ``task`` at loop time ``due`` unless :meth:`stop` comes first."""
        self._due[task] = due
        loop = task.get_loop()
        timer = self._timer
        if timer is None or timer.when() > due or self._timer_loop is not loop:
            self._arm(loop, due)

    def stop(self, task: asyncio.Task[Any]) -> bool:
        """Forget ``task``'s deadline; True when it had expired (the task was cancelled)."""
        del self._due[task]
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_loop = loop.call_at(when, self._fire, loop), loop

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = self._timer_loop = None
        now = loop.time()
        nearest: float | None = None
        for task, due in list(self._due.items()):
            if task.get_loop() is not loop or task in self._expired:
                continue
            if due <= now:
                self._expired.add(task)
                task.cancel()
            elif nearest is None or due < nearest:
                nearest = due
        if nearest is not None:
            self._arm(loop, nearest)


class BodyLimit:
    """Bounded, timed body read in front of the app (pure ASGI)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.deadlines = Deadlines()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, self._too_large())
            return
        chunks: list[bytes] = []
        size = 0
        refusal: RankerError | None = None
        task = asyncio.current_task()
        assert task is not None  # an ASGI app runs in a task
        self.deadlines.start(task, task.get_loop().time() + self.timeout_s)
        stopped = False
        try:
            more = True
            while more and refusal is None:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away; nobody to answer
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_bytes:
                    refusal = self._too_large()
                chunks.append(chunk)
                more = message.get("more_body", False)
        except asyncio.CancelledError:
            stopped = True
            if not self.deadlines.stop(task) or task.uncancel() > 0:
                raise  # not (only) the body's deadline: the task is being cancelled
            refusal = RequestTimeout(f"the request body did not arrive within {self.timeout_s:g} s")
        finally:
            if not stopped:
                self.deadlines.stop(task)
        if refusal is not None:
            await self._refuse(scope, receive, send, refusal)
            return
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # what follows the body: http.disconnect
            delivered = True
            return body

        await self.app(scope, replay, send)

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(
            f"the request body is larger than this port's limit of {self.max_bytes} bytes",
            detail={"max_bytes": self.max_bytes},
        )

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, err: RankerError) -> None:
        await error_response(err)(scope, receive, send)
