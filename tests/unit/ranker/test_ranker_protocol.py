"""The HTTP protocol of both ports (:mod:`rankswap_ranker.protocol`): uvicorn's real httptools
protocol on a recording transport, the coalescing writer on its own, and the drain's stop
decisions (a real stopping pod: tests/integration/ranker/test_ranker_drain.py)."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from rankswap_ranker.app import create_app
from rankswap_ranker.bundle import Bundle
from rankswap_ranker.candidates import LazyProductDB
from rankswap_ranker.protocol import (
    CoalescedWrites,
    Drain,
    DrainingServer,
    EarlySignals,
    http_protocol,
)
from rankswap_ranker.registry import BundleRegistry
from rankswap_ranker.settings import RankerSettings

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recording:
    """A transport that records what is written to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 80)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    body = b'{"items": []}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _protocol(
    transport: Recording, header_timeout_s: float = 5.0, drain: Drain | None = None
) -> Any:
    cls = http_protocol(header_timeout_s, drain)
    config = uvicorn.Config(_app, http=cls, lifespan="off", log_config=None, proxy_headers=False)
    config.load()
    proto = cls(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    proto.connection_made(transport)  # type: ignore[arg-type]
    return proto


async def test_a_response_leaves_in_one_write() -> None:
    """uvicorn writes the status line and headers, then the body; the port sends them as one
    buffer (one send syscall, one TCP segment for a small answer), in order, for every request
    of a keep-alive connection."""
    transport = Recording()
    proto = _protocol(transport)
    request = b"POST /v1/rank HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\n\r\n{}"
    for n in (1, 2):
        proto.data_received(request)
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(transport.writes) == n
        head, _, body = transport.writes[-1].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"content-length: 13" in head
        assert body == b'{"items": []}'
    proto.connection_lost(None)


async def test_a_connection_that_sends_no_headers_is_closed() -> None:
    transport = Recording()
    proto = _protocol(transport, header_timeout_s=0.05)
    proto.data_received(b"POST /v1/rank HTTP/1.1\r\nHost: r\r\n")  # headers never end
    await asyncio.sleep(0.3)
    assert transport.closed
    assert transport.writes == []
    proto.connection_lost(None)


async def test_headers_count_from_the_connection_and_from_each_next_request() -> None:
    """The header deadline of the first request counts from the connection's opening, of the
    next ones from their first byte; answered requests in between do not close it."""
    transport = Recording()
    proto = _protocol(transport, header_timeout_s=0.2)
    request = b"POST /v1/rank HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\n\r\n{}"
    for _ in range(3):  # each answered well within the deadline, 0.3 s in all
        await asyncio.sleep(0.1)
        proto.data_received(request)
    await asyncio.sleep(0.05)
    assert not transport.closed and len(transport.writes) == 3
    proto.data_received(b"POST /v1/rank HTTP/1.1\r\n")  # headers never end
    await asyncio.sleep(0.1)
    assert not transport.closed
    await asyncio.sleep(0.25)
    assert transport.closed
    proto.connection_lost(None)


async def test_an_idle_keep_alive_connection_is_closed_after_its_timeout_only() -> None:
    transport = Recording()
    proto = _protocol(transport)
    proto.timeout_keep_alive = 0.2
    request = b"POST /v1/rank HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\n\r\n{}"
    for _ in range(4):  # busy for 0.4 s: never idle for 0.2 s
        proto.data_received(request)
        await asyncio.sleep(0.1)
    assert not transport.closed and len(transport.writes) == 4
    await asyncio.sleep(0.3)  # idle: closed
    assert transport.closed
    proto.connection_lost(None)


async def test_coalesced_writes_hold_one_loop_iteration_and_keep_the_order() -> None:
    transport = Recording()
    writes = CoalescedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"a")
    writes.write(b"b")
    assert transport.writes == []  # held until this iteration ends
    await asyncio.sleep(0)
    assert transport.writes == [b"ab"]
    writes.write(b"c")
    await asyncio.sleep(0)
    writes.write(b"d")
    await asyncio.sleep(0)
    assert transport.writes == [b"ab", b"c", b"d"]


async def test_closing_sends_what_is_held_first() -> None:
    transport = Recording()
    writes = CoalescedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"last words")
    writes.close()
    assert transport.writes == [b"last words"]
    assert transport.closed and writes.is_closing()
    await asyncio.sleep(0)  # the cancelled flush writes nothing after the close
    assert transport.writes == [b"last words"]


async def test_nothing_is_written_to_a_transport_closed_meanwhile() -> None:
    transport = Recording()
    writes = CoalescedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"too late")
    transport.close()  # the peer went away (connection_lost closes the real one)
    await asyncio.sleep(0)
    assert transport.writes == []
    assert writes.get_extra_info("peername") == ("127.0.0.1", 5000)  # the rest is the transport's


REQUEST = b"GET /healthz HTTP/1.1\r\nHost: r\r\n\r\n"


async def _answer(proto: Any, transport: Recording) -> bytes:
    proto.data_received(REQUEST)
    for _ in range(5):
        await asyncio.sleep(0)
    head, _, _ = transport.writes[-1].partition(b"\r\n\r\n")
    return head


async def test_while_draining_each_answer_closes_its_connection() -> None:
    drain = Drain()
    transport = Recording()
    proto = _protocol(transport, drain=drain)
    head = await _answer(proto, transport)
    assert b"connection: close" not in head and not transport.closed  # kept alive
    drain.deadline = 0.0
    head = await _answer(proto, transport)
    assert b"connection: close" in head
    assert transport.closed
    proto.connection_lost(None)


def _server(drain_s: float, now: list[float]) -> DrainingServer:
    config = uvicorn.Config(_app, lifespan="off", log_config=None)
    return DrainingServer(config, Drain(), drain_s, clock=lambda: now[0])


async def test_the_first_sigterm_drains_and_the_drain_ends_at_its_deadline() -> None:
    """Even with no connection open: a lagging Service rule may still route new ones here."""
    now = [100.0]
    server = _server(2.0, now)
    server.handle_exit(signal.SIGTERM, None)
    assert server.drain.deadline == 102.0 and not server.should_exit
    assert await server.on_tick(1) is False
    now[0] = 101.9
    assert await server.on_tick(2) is False
    now[0] = 102.0
    assert await server.on_tick(3) is True


@pytest.mark.parametrize(
    ("drain_s", "signals"),
    [(2.0, [signal.SIGTERM, signal.SIGTERM]), (2.0, [signal.SIGINT]), (0.0, [signal.SIGTERM])],
)
async def test_a_second_sigterm_a_sigint_or_no_drain_stops_at_once(
    drain_s: float, signals: list[signal.Signals]
) -> None:
    server = _server(drain_s, [0.0])
    for sig in signals:
        server.handle_exit(sig, None)
    assert server.should_exit


def test_a_sigterm_before_the_servers_handlers_are_in_place_drains_once_they_are() -> None:
    """A worker's handlers note a SIGTERM that arrives while uvicorn sets its loop up; the
    server drains on it as soon as its own handlers are in place (it used to be ignored: the
    worker served on until the supervisor's SIGKILL)."""
    early = EarlySignals()
    now = [50.0]
    server = DrainingServer(
        uvicorn.Config(_app, lifespan="off", log_config=None),
        Drain(),
        2.0,
        clock=lambda: now[0],
        early=early,
    )
    before = signal.getsignal(signal.SIGTERM)
    try:
        early.install()
        signal.raise_signal(signal.SIGTERM)  # noted, nothing else
        assert early.caught == [signal.SIGTERM] and not server.drain.active
        with server.capture_signals():
            assert server.drain.deadline == 52.0 and not server.should_exit
            assert early.caught == []
    finally:
        signal.signal(signal.SIGTERM, before)


# The direct path: requests the protocol answers itself -----------------------------------------


class Direct:
    """Answers every POST with a body, as :func:`_app` would (another body: tells them apart)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def accepts(self, scope: Any) -> bool:
        return bool(scope["method"] == "POST")

    def answer(self, raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        self.bodies.append(raw)
        body = b'{"direct": true}'
        return 200, [(b"content-type", b"application/json"), (b"content-length", b"16")], body


def _direct_protocol(transport: Recording, direct: Any, drain: Drain | None = None) -> Any:
    cls = http_protocol(5.0, drain, direct=direct)
    config = uvicorn.Config(_app, http=cls, lifespan="off", log_config=None, proxy_headers=False)
    config.load()
    proto = cls(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    proto.connection_made(transport)  # type: ignore[arg-type]
    return proto


async def test_a_whole_request_is_answered_directly_in_one_write_before_the_loop_runs() -> None:
    transport = Recording()
    direct = Direct()
    proto = _direct_protocol(transport, direct)
    request = b"POST /v1/rank HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\n\r\n{}"
    proto.data_received(request + request)  # pipelined: both answered, in order
    assert direct.bodies == [b"{}", b"{}"]
    assert len(transport.writes) == 2 and not transport.closed
    for write in transport.writes:
        assert write == (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n"
            b'{"direct": true}'
        )
    assert proto.server_state.total_requests == 2
    assert proto._idle_due is not None  # idle again: the keep-alive deadline runs
    await asyncio.sleep(0)
    assert len(transport.writes) == 2
    proto.connection_lost(None)


async def test_a_direct_answer_carries_the_default_headers_of_its_second() -> None:
    """uvicorn's server replaces its default headers once a second (a new ``date``); the direct
    path encodes each list once, and an answer carries the list of its own request."""
    transport = Recording()
    proto = _direct_protocol(transport, Direct())
    request = b"POST /v1/rank HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\n\r\n{}"
    for date in (b"D1", b"D1", b"D2"):
        if proto.server_state.default_headers[:1] != [(b"date", date)]:
            proto.server_state.default_headers = [(b"date", date), (b"server", b"u")]
        proto.data_received(request)
    heads = [w.partition(b"\r\n\r\n")[0].split(b"\r\n") for w in transport.writes]
    assert [h[1:3] for h in heads] == [[b"date: D1", b"server: u"]] * 2 + [
        [b"date: D2", b"server: u"]
    ]
    assert not transport.closed
    # A configured `Connection: close` among them closes each answer's connection.
    proto.server_state.default_headers = [(b"connection", b"Close")]
    proto.data_received(request)
    assert transport.writes[-1].startswith(b"HTTP/1.1 200 OK\r\nconnection: Close\r\n")
    assert transport.writes[-1].lower().count(b"connection:") == 1  # as uvicorn: not twice
    assert transport.closed
    proto.connection_lost(None)


async def test_a_body_still_on_its_way_takes_the_asgi_path() -> None:
    transport = Recording()
    direct = Direct()
    proto = _direct_protocol(transport, direct)
    proto.data_received(b"POST /v1/rank HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\n\r\n{")
    proto.data_received(b"}")
    for _ in range(5):
        await asyncio.sleep(0)
    assert direct.bodies == []
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b'{"items": []}')
    proto.data_received(REQUEST)  # a GET: not accepted, the app answers
    for _ in range(5):
        await asyncio.sleep(0)
    assert direct.bodies == [] and len(transport.writes) == 2
    proto.connection_lost(None)


async def test_a_direct_answer_while_draining_closes_its_connection() -> None:
    drain = Drain()
    drain.deadline = 0.0
    transport = Recording()
    proto = _direct_protocol(transport, Direct(), drain)
    proto.data_received(b"POST /v1/rank HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\n\r\n{}")
    head, _, _ = transport.writes[-1].partition(b"\r\n\r\n")
    assert head.endswith(b"connection: close")
    assert transport.closed
    proto.connection_lost(None)


_RANK = {
    "tenant_id": "acme",
    "context": {"employee_id": 1, "description": "taxi", "amount": 2480, "date": "2026-11-27"},
}
DIRECT_PARITY = [
    json.dumps(_RANK).encode(),
    json.dumps({**_RANK, "top_k": 12}).encode(),
    json.dumps({**_RANK, "tenant_id": "nobody"}).encode(),  # 404
    json.dumps({**_RANK, "top_k": 101}).encode(),  # 422, the bound
    json.dumps({**_RANK, "context": {"employee_id": 1}}).encode(),  # 422, missing fields
    b'{"tenant_id": "acme", "context": ',  # 422, not JSON
    b"\xff\xfe not utf-8",
    b"null",
]


def _rank_request(raw: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"POST /v1/rank HTTP/1.1\r\nHost: r\r\nContent-Type: " + content_type + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % len(raw) + raw
    )


async def test_the_direct_path_answers_byte_for_byte_as_the_asgi_path_and_counts_alike(
    settings: RankerSettings, loaded: Bundle, db_url: str
) -> None:
    """The real app, through the real protocol: each rank request answered directly is written
    exactly as the ASGI path writes it (status line, headers, body), in one write, and counted
    in the same series."""
    registry: BundleRegistry[Bundle] = BundleRegistry(1)
    registry.activate(loaded)
    app = create_app(settings, registry, LazyProductDB(db_url))
    assert app.state.direct is not None
    answers: dict[str, list[bytes]] = {}
    for name, direct in (("direct", app.state.direct), ("asgi", None)):
        transport = Recording()
        cls = http_protocol(5.0, None, direct=direct)
        config = uvicorn.Config(app, http=cls, lifespan="off", log_config=None, proxy_headers=False)
        config.load()
        state = ServerState()
        state.default_headers = [(b"date", b"Wed, 02 Dec 2026 21:00:00 GMT"), (b"server", b"u")]
        proto = cls(config=config, server_state=state, app_state={})  # type: ignore[call-arg]
        proto.connection_made(transport)  # type: ignore[arg-type]
        for raw in DIRECT_PARITY:
            proto.data_received(_rank_request(raw))
            if direct is not None:
                assert len(transport.writes) == DIRECT_PARITY.index(raw) + 1  # at once
            for _ in range(10):
                await asyncio.sleep(0)
        proto.connection_lost(None)
        answers[name] = transport.writes
    assert len(answers["direct"]) == len(DIRECT_PARITY)
    for a, b in zip(answers["direct"], answers["asgi"], strict=True):
        assert a == b
    assert answers["direct"][0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"x-rankswap-bundle: " + loaded.bundle_id.encode() in answers["direct"][0]
    text = app.state.metrics.exposition()[0].decode()
    assert 'rankswap_ranker_requests_total{route="/v1/rank",status="200"} 4.0' in text  # 2 + 2
    assert 'rankswap_ranker_requests_total{route="/v1/rank",status="404"} 2.0' in text
    assert 'rankswap_ranker_requests_total{route="/v1/rank",status="422"} 10.0' in text


@pytest.mark.parametrize(
    ("request_bytes", "taken"),
    [
        (_rank_request(b"{}"), True),
        (_rank_request(b"{}", b"application/vnd.x+json; charset=utf-8"), True),
        (_rank_request(b"{}", b"text/plain"), False),
        (_rank_request(b""), False),  # empty: the framework's own answer
        (b"POST /v1/rank HTTP/1.1\r\nContent-Type: application/json\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", False),
        (b"POST /v1/other HTTP/1.1\r\nContent-Type: application/json\r\n"
         b"Content-Length: 2\r\n\r\n{}", False),
        (b"PUT /v1/rank HTTP/1.1\r\nContent-Type: application/json\r\n"
         b"Content-Length: 2\r\n\r\n{}", False),
    ],
)  # fmt: skip
async def test_what_the_direct_path_takes(
    settings: RankerSettings, loaded: Bundle, db_url: str, request_bytes: bytes, taken: bool
) -> None:
    registry: BundleRegistry[Bundle] = BundleRegistry(1)
    registry.activate(loaded)
    app = create_app(settings, registry, LazyProductDB(db_url))
    seen: list[bytes] = []
    real = app.state.direct

    class Spy:
        def accepts(self, scope: Any) -> bool:
            return bool(real.accepts(scope))

        def answer(self, raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            seen.append(raw)
            return real.answer(raw)  # type: ignore[no-any-return]

    transport = Recording()
    cls = http_protocol(5.0, None, direct=Spy())
    config = uvicorn.Config(app, http=cls, lifespan="off", log_config=None, proxy_headers=False)
    config.load()
    proto = cls(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    proto.connection_made(transport)  # type: ignore[arg-type]
    proto.data_received(request_bytes)
    for _ in range(10):
        await asyncio.sleep(0)
    assert bool(seen) is taken
    assert len(transport.writes) == 1  # answered either way
    proto.connection_lost(None)


def test_no_direct_path_over_the_limit_with_tracing_postgres_or_the_access_log(
    settings: RankerSettings, loaded: Bundle, db_url: str
) -> None:
    registry: BundleRegistry[Bundle] = BundleRegistry(1)
    registry.activate(loaded)
    source = LazyProductDB(db_url)
    direct = create_app(settings, registry, source).state.direct
    limit = settings.public_max_body_bytes
    for length, ok in ((b"1", True), (b"%d" % limit, True), (b"%d" % (limit + 1), False)):
        headers = [(b"content-type", b"application/json"), (b"content-length", length)]
        scope = {"type": "http", "method": "POST", "path": "/v1/rank", "headers": headers}
        assert direct.accepts(scope) is ok
    logged = settings.model_copy(update={"access_log": True})
    assert create_app(logged, registry, source).state.direct is None
    pg = settings.model_copy(update={"database_url": "postgresql://u@h/db"})
    assert create_app(pg, registry, source).state.direct is None


# uvicorn 0.55.0's methods the protocol copies or hooks (protocol.http_protocol), by a hash of
# their source: an upgrade that changes one of them fails here, so the copy is reviewed
# against the new code before it serves (docker/constraints.txt pins the images' uvicorn).
UVICORN_REVIEWED = {
    "on_response_complete": "64e254f28e389e76",  # copied, the keep-alive timer a deadline
    "_unset_keepalive_if_required": "00a6a4e47214e68e",  # replaced
    "_start_asgi_task": "8d0189e65525db42",  # hooked: the direct path holds the cycle
    "on_message_complete": "1fbad42dc31fc01f",  # hooked: the direct answer
    "data_received": "010a7ae59a5d3b1a",  # hooked: a body that did not come whole
}


def test_the_uvicorn_code_the_protocol_copies_is_the_reviewed_one() -> None:
    import hashlib
    import inspect

    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    now = {
        name: hashlib.sha256(
            inspect.getsource(getattr(HttpToolsProtocol, name)).encode()
        ).hexdigest()[:16]
        for name in UVICORN_REVIEWED
    }
    changed = sorted(n for n in UVICORN_REVIEWED if now[n] != UVICORN_REVIEWED[n])
    assert not changed, f"uvicorn changed {changed}: review rankswap_ranker/protocol.py's copy"
