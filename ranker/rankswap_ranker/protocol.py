"""The HTTP protocol of both ports: uvicorn's httptools protocol, plus what it lacks.

* **A header timeout.** A connection that has not sent a complete request line and headers
  within ``header_timeout_s`` of opening (or of starting its next request) is closed. uvicorn's
  own ``timeout_keep_alive`` closes a connection idle between requests; neither covers a
  connection that never sends anything.
* **One write per response.** uvicorn writes a response's status line and headers, then its
  body, as two ``transport.write`` calls; uvloop sends each at once, so every small answer costs
  two ``send`` syscalls and two TCP segments, and the client is woken twice (on loopback the
  receiver's network stack runs in the sender's system time). :class:`CoalescedWrites` holds
  what a response cycle writes until the end of the event-loop iteration — the body follows
  its headers in the same iteration — and sends it as one buffer. Nothing waits longer than
  that iteration, a close sends what is held first, and the order of writes is kept.
* **A drain before the stop.** On SIGTERM uvicorn closes every idle keep-alive connection at
  once. A client that sends its next request on such a connection while the close is on its
  way gets no answer ("server disconnected") — and after the pod's preStop sleep its kept-alive
  connections are the only traffic still reaching it. :class:`DrainingServer` first serves on
  for ``drain_s`` seconds with every answer carrying ``Connection: close`` (the client closes,
  and its next request opens a connection the Service routes to a pod that is not stopping),
  then stops as uvicorn does: nothing in flight is dropped and no client is left with a
  connection the pod is about to close. The drain lasts its whole time even with no
  connection open: a node whose Service rules still lag (kube-proxy syncs endpoint changes
  seconds late under load) may route a new connection here, which is answered rather than
  refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Generator
from types import FrameType
from typing import Any, Protocol

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from rankswap_ranker import logs

log = logging.getLogger("rankswap.ranker")


class Drain:
    """Whether the process is draining: set once, by :class:`DrainingServer`; read by the
    protocol at each request."""

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        self.deadline: float | None = None
        """Monotonic time the drain ends (None: not draining)."""

    @property
    def active(self) -> bool:
        return self.deadline is not None


class EarlySignals:
    """SIGTERM / SIGINT noted between a worker's start of serving and its server's own
    handlers (uvicorn installs them only once its loop runs); :class:`DrainingServer` acts on
    them then. Ignoring such a signal instead would leave the worker serving until SIGKILL."""

    def __init__(self) -> None:
        self.caught: list[int] = []

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.note)

    def note(self, sig: int, frame: FrameType | None) -> None:
        self.caught.append(sig)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, whose first SIGTERM starts a drain of ``drain_s`` seconds (see the
    module's docstring) before the usual graceful stop; a second SIGTERM, a SIGINT or
    ``should_exit`` stops at once. ``drain_s`` 0: uvicorn's own behaviour."""

    def __init__(
        self,
        config: uvicorn.Config,
        drain: Drain,
        drain_s: float,
        clock: Callable[[], float] = time.monotonic,
        early: EarlySignals | None = None,
    ) -> None:
        super().__init__(config)
        self.drain = drain
        self.drain_s = drain_s
        self.clock = clock
        self.early = early

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            while self.early is not None and self.early.caught:
                self.handle_exit(self.early.caught.pop(0), None)
            yield

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self.drain_s > 0 and not self.drain.active:
            self.drain.deadline = self.clock() + self.drain_s
            logs.event(log, logging.INFO, "draining", drain_s=self.drain_s)
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        deadline = self.drain.deadline
        if deadline is not None and self.clock() >= deadline:
            self.should_exit = True
        return await super().on_tick(counter)


class CoalescedWrites:
    """The transport as a response cycle sees it: writes of one loop iteration leave as one."""

    __slots__ = ("_held", "_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._pending: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        self._held.append(data)
        if self._pending is None:
            self._pending = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._held:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            self._held.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def write_now(self, data: bytes) -> None:
        """Send ``data`` at once, after whatever is held (a whole answer: nothing to wait for)."""
        if self._held:
            self._held.append(data)
            self.flush()
        elif not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # everything else: the transport itself
        return getattr(self._transport, name)


def closes(connection: bytes) -> bool:
    """Whether a ``Connection`` header's value asks to close (uvicorn's reading: a token)."""
    return b"close" in [token.lower().strip() for token in connection.split(b",")]


class EncodedDefaults:
    """uvicorn's default response headers (its ``date`` and the configured ones) as the bytes a
    response head carries, encoded once per list: uvicorn's server replaces the list once a
    second (a new ``date``) and never changes one in place, so a list seen before is known by
    its identity. The list is held, so its identity cannot pass to another list meanwhile."""

    __slots__ = ("closes", "data", "source")

    def __init__(self) -> None:
        self.source: list[tuple[bytes, bytes]] | None = None
        self.data = b""
        self.closes = False
        """Whether one of them is a ``connection: close`` (the answer then closes)."""

    def of(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        if headers is not self.source:
            self.data = b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)
            self.closes = any(name == b"connection" and closes(value) for name, value in headers)
            self.source = headers
        return self.data


class DirectAnswers(Protocol):
    """Requests the protocol answers itself, without an ASGI task (``rankswap_ranker.app.
    DirectRank``)."""

    def accepts(self, scope: Any) -> bool:
        """Whether the request of this (complete but for its body) scope is one of them."""

    def answer(self, raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body of the answer to the whole body ``raw``; never raises."""


def http_protocol(
    header_timeout_s: float, drain: Drain | None = None, direct: DirectAnswers | None = None
) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the header timeout and one write per response; with a
    ``drain``, every request answered while it is active closes its connection.

    With ``direct``: a request it accepts whose whole body arrives in the same read as its
    headers (a small body, as every rank request is) is answered by the protocol as the body
    completes, synchronously: no ASGI task, no app layers, no per-message ``send``; the answer
    is written as uvicorn's cycle would write it (status line, its default headers, the
    answer's, ``connection: close`` when the connection is not kept alive), in one write, and
    the connection goes on exactly as after an ASGI answer (keep-alive timer, pipelining, the
    drain's close). A request whose body is still on its way when the read ends gets its ASGI
    task then, as usual (the app's body limit and body timeout apply)."""

    defaults = EncodedDefaults()

    class RankswapHttpProtocol(HttpToolsProtocol):
        _header_due: float | None = None
        """Loop time by which the request line and headers must have come (None: not due)."""
        _idle_due: float | None = None
        """Loop time at which an idle keep-alive connection is closed (None: not idle)."""
        _timer: asyncio.TimerHandle | None = None
        _timer_at = 0.0
        _writes: CoalescedWrites | None = None
        _in_headers = False
        _direct: tuple[Any, Any] | None = None
        """The cycle (and app) held for a direct answer while its body is read."""

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            held = self._direct
            if held is not None:  # the body did not come whole: the ASGI path answers
                self._direct = None
                HttpToolsProtocol._start_asgi_task(self, *held)

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            if (
                self._in_headers
                and direct is not None
                and app is self.app  # not uvicorn's 503 over the concurrency limit
                and not self.expect_100_continue
                and not self.flow.write_paused
                and direct.accepts(cycle.scope)
            ):
                self._direct = (cycle, app)
                return
            super()._start_asgi_task(cycle, app)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            held = self._direct
            if held is not None and held[0] is self.cycle:
                self._direct = None
                self._answer_directly(held[0])

        def _answer_directly(self, cycle: Any) -> None:
            assert direct is not None
            raw = bytes(cycle.body)
            cycle.body = bytearray()
            status, headers, body = direct.answer(raw)
            content = [STATUS_LINE[status], defaults.of(cycle.default_headers)]
            has_close = defaults.closes
            for name, value in headers:
                if name == b"connection" and closes(value):
                    has_close = True
                content += (name, b": ", value, b"\r\n")
            if has_close:
                cycle.keep_alive = False
            elif not cycle.keep_alive:
                content.append(b"connection: close\r\n")
            content += (b"\r\n", body)
            cycle.response_started = cycle.response_complete = True
            cycle.waiting_for_100_continue = False
            if self._writes is not None:
                self._writes.write_now(b"".join(content))
            else:
                self.transport.write(b"".join(content))
            cycle.message_event.set()
            if not cycle.keep_alive:
                self.transport.close()
            cycle.on_response = lambda: None
            self.on_response_complete()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._writes = CoalescedWrites(transport, self.loop)
            self._arm_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._disarm_header_timer()
            self._in_headers = True
            try:
                super().on_headers_complete()
            finally:
                self._in_headers = False
            # The cycle just made (its task has not run yet) writes through the coalescer.
            if self.cycle is not None and self._writes is not None:
                self.cycle.transport = self._writes  # type: ignore[assignment]
            if drain is not None and drain.deadline is not None and self.cycle is not None:
                self.cycle.keep_alive = False  # the answer says `Connection: close`, then closes

        def connection_lost(self, exc: Exception | None) -> None:
            self._header_due = self._idle_due = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)

        # The header and keep-alive deadlines share one lazily re-armed timer per connection:
        # a request only moves a deadline (a float), where arming and cancelling an event-loop
        # timer for each (uvicorn's keep-alive timer, and ours for the headers) cost two timer
        # handles per request. The timer fires at the earliest deadline it was armed for; a
        # deadline that moved meanwhile re-arms it for the new one, so each closes its
        # connection exactly when it would with its own timer.

        def _arm_header_timer(self) -> None:
            if self._header_due is None:
                self._header_due = due = self.loop.time() + header_timeout_s
                self._wake_at(due)

        def _disarm_header_timer(self) -> None:
            self._header_due = None

        def _unset_keepalive_if_required(self) -> None:
            self._idle_due = None

        def on_response_complete(self) -> None:
            # uvicorn's (0.55), the keep-alive timer being a deadline of the shared timer.
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._idle_due = None
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            else:
                self._idle_due = due = self.loop.time() + self.timeout_keep_alive
                self._wake_at(due)

        def _wake_at(self, due: float) -> None:
            timer = self._timer
            if timer is None or self._timer_at > due:
                if timer is not None:
                    timer.cancel()
                self._timer, self._timer_at = self.loop.call_at(due, self._deadline), due

        def _deadline(self) -> None:
            self._timer = None
            now = self.loop.time()
            dues = [d for d in (self._header_due, self._idle_due) if d is not None]
            if any(d <= now for d in dues):  # headers late, or idle too long: close
                self._header_due = self._idle_due = None
                if not self.transport.is_closing():
                    self.transport.close()
            elif dues:
                self._wake_at(min(dues))

    return RankswapHttpProtocol
