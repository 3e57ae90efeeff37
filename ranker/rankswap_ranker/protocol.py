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
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # everything else: the transport itself
        return getattr(self._transport, name)


def http_protocol(header_timeout_s: float, drain: Drain | None = None) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the header timeout and one write per response; with a
    ``drain``, every request answered while it is active closes its connection."""

    class RankswapHttpProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _writes: CoalescedWrites | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._writes = CoalescedWrites(transport, self.loop)
            self._arm_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._disarm_header_timer()
            super().on_headers_complete()
            # The cycle just made (its task has not run yet) writes through the coalescer.
            if self.cycle is not None and self._writes is not None:
                self.cycle.transport = self._writes  # type: ignore[assignment]
            if drain is not None and drain.deadline is not None and self.cycle is not None:
                self.cycle.keep_alive = False  # the answer says `Connection: close`, then closes

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout_s, self._headers_late)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return RankswapHttpProtocol
