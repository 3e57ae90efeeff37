"""A stopping ranker drains its kept-alive connections instead of closing them under clients.

After a pod's preStop sleep the Service no longer routes new connections to it, but a client's
kept-alive connection still reaches it. uvicorn alone closes such an idle connection the moment
it is told to stop; a request the client sends meanwhile is lost ("server disconnected"). With
the drain, the connection stays open, its next answer says ``Connection: close``, and only then
is it closed (the client's next request opens a connection to a pod that is not stopping).
"""

from __future__ import annotations

import json
import select
import signal
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from tests.integration.ranker.conftest import WORKERS, RankerPod


class Connection:
    """One HTTP/1.1 connection, kept open by us whatever the answers say."""

    def __init__(self, pod: RankerPod) -> None:
        url = urlsplit(pod.public_url)
        assert url.hostname is not None and url.port is not None
        self.sock = socket.create_connection((url.hostname, url.port), timeout=10)

    def healthz(self) -> tuple[int, dict[str, str]]:
        """GET /healthz: the status and the headers (lower-case names)."""
        self.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: ranker\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed without an answer after {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines)}
        while len(body) < int(headers["content-length"]):
            body += self.sock.recv(65536)
        return int(status_line.split()[1]), headers

    def closed_by_server(self, wait_s: float) -> bool:
        """Whether the server closed this idle connection (EOF readable) within ``wait_s``."""
        readable, _, _ = select.select([self.sock], [], [], wait_s)
        return bool(readable) and self.sock.recv(1) == b""

    def close(self) -> None:
        self.sock.close()


def _sigterm_and_wait_for_the_drain(pod: RankerPod) -> None:
    """SIGTERM to the supervisor (what the kubelet sends after the preStop sleep), which passes
    it to its workers; returns once every worker has logged the start of its drain."""
    assert pod.proc is not None
    # The pod is ready once one worker serves; a worker still starting has nothing to drain
    # (a SIGTERM before its server runs ends it at once), so wait for all of them first.
    pod.wait(
        lambda: pod.log.read_text().count('"Started server process') >= WORKERS + 1,
        60,
        "every worker serving",
    )
    pod.proc.send_signal(signal.SIGTERM)
    pod.wait(
        lambda: pod.log.read_text().count('"draining"') >= WORKERS, 30, "every worker draining"
    )


def test_a_kept_alive_connection_is_answered_with_connection_close_after_sigterm(
    start_ranker: Callable[..., RankerPod],
) -> None:
    pod = start_ranker(drain_s="15", keep_alive_timeout_s="60")
    conn = Connection(pod)
    try:
        status, headers = conn.healthz()
        assert status == 200 and "connection" not in headers  # kept alive
        _sigterm_and_wait_for_the_drain(pod)
        # Without the drain the worker closes this idle connection within ~0.2 s of SIGTERM.
        assert not conn.closed_by_server(1.0), "the idle connection was closed on SIGTERM"
        status, headers = conn.healthz()
        assert status == 200 and headers.get("connection") == "close"
        assert conn.closed_by_server(5.0), "the connection stayed open after Connection: close"
    finally:
        conn.close()
    assert pod.proc is not None and pod.proc.wait(40) == 0


def test_a_new_connection_during_the_drain_is_served_and_closed(
    start_ranker: Callable[..., RankerPod],
) -> None:
    pod = start_ranker(drain_s="15", keep_alive_timeout_s="60")
    held = Connection(pod)
    try:
        assert held.healthz()[0] == 200  # keeps its worker draining until it is used
        _sigterm_and_wait_for_the_drain(pod)
        late = Connection(pod)  # routed here before the Service dropped the pod
        try:
            status, headers = late.healthz()
            assert status == 200 and headers.get("connection") == "close"
        finally:
            late.close()
        assert held.healthz()[1].get("connection") == "close"
    finally:
        held.close()
    assert pod.proc is not None and pod.proc.wait(40) == 0


def test_the_supervisor_passes_sigterm_on_before_it_stops_its_admin_server(
    start_ranker: Callable[..., RankerPod],
) -> None:
    """The workers' drain starts when the kubelet's SIGTERM arrives. (It used to start only
    after the supervisor's admin server had shut down: under load a second or more of the
    window the preStop sleep and the drain buy was gone.)"""
    pod = start_ranker(drain_s="1")
    _sigterm_and_wait_for_the_drain(pod)
    assert pod.proc is not None and pod.proc.wait(40) == 0
    supervisor = [
        json.loads(line)["msg"]
        for line in pod.log.read_text().splitlines()
        if line.startswith("{") and json.loads(line).get("role") == "supervisor"
    ]
    assert "stopping workers" in supervisor and "Shutting down" in supervisor, supervisor
    assert supervisor.index("stopping workers") < supervisor.index("Shutting down"), supervisor
    assert supervisor.count("stopping workers") == 1, supervisor
