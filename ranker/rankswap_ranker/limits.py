"""Request limits of both ports: body size and body time (ASGI), header and idle time (protocol).

* :class:`BodyLimit` reads a request's body, at most ``max_bytes`` of it, before the app sees
  it. A ``Content-Length`` over the limit is answered 413 at once, without reading a byte of the
  body; a chunked body is answered 413 as soon as it passes the limit. A body that does not
  arrive within ``timeout_s`` is answered 408. Both in the error envelope, with
  ``Connection: close`` (the rest of the body is never read). Memory per request is bounded by
  the limit, whatever the client sends.

The header and idle time of a connection are the protocol's (:mod:`rankswap_ranker.protocol`).
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rankswap_ranker.errors import BodyTooLarge, RankerError, RequestTimeout, error_response


class BodyLimit:
    """Bounded, timed body read in front of the app (pure ASGI)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

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
        try:
            async with asyncio.timeout(self.timeout_s):
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
        except TimeoutError:
            refusal = RequestTimeout(f"the request body did not arrive within {self.timeout_s:g} s")
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
