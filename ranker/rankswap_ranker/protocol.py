"""The HTTP protocol of both ports: uvicorn's httptools protocol, plus two things it lacks.

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
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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


def http_protocol(header_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the header timeout and one write per response."""

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
