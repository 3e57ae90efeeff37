"""A small HTTP/1.1 load generator, run as its own process: ``python -m rankswap_dev.bench_ranker.loadgen``.

Keep-alive connections on raw asyncio streams (uvloop), so the client costs far less CPU than
the server it measures. Closed loop (``--rate 0``: each connection sends as soon as it has its
answer) or open loop (``--rate R``: request *i* is due at ``start + i / R``; latency counts from
the due time, so a stalled server is not hidden by the client waiting for it).
Writes one JSON document: per request (due time, latency, status), plus the totals.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


async def _worker(
    host: str,
    port: int,
    request: bytes,
    *,
    start: float,
    until: float,
    rate: float,
    counter: list[int],
    out: list[tuple[float, float, int]],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            i = counter[0]
            counter[0] += 1
            due = start + i / rate if rate > 0 else time.perf_counter()
            if due >= until:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status = 0
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status = -1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            out.append((due - start, time.perf_counter() - due, status))
    finally:
        writer.close()


async def run(
    url: str, body: bytes, duration: float, concurrency: int, rate: float
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    out: list[tuple[float, float, int]] = []
    counter = [0]
    start = time.perf_counter() + 0.05
    until = start + duration
    await asyncio.gather(
        *(
            _worker(
                host, port, request, start=start, until=until, rate=rate, counter=counter, out=out
            )
            for _ in range(concurrency)
        )
    )
    elapsed = time.perf_counter() - start
    return {"elapsed_s": elapsed, "requests": out}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--body", required=True, help="JSON request body")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--rate", type=float, default=0.0, help="requests/s (0: closed loop)")
    args = p.parse_args(argv)
    import uvloop  # ships with uvicorn[standard]

    doc = uvloop.run(run(args.url, args.body.encode(), args.duration, args.concurrency, args.rate))
    json.dump(doc, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
