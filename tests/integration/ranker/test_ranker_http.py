"""A real ranker pod's two ports from outside: request limits on the wire and a schemathesis run.

Raw sockets, because what is tested is what a client can do that httpx never would: open a
connection and say nothing, stop in the middle of its headers, announce 100 MB and send none of
it, or stream a chunked body with no end. Every read has a socket timeout far above the pod's
configured limits, so on a server without the limits the read times out and the test fails
(no timing assertion: only "the server closed" or "the server answered").
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.integration.ranker.conftest import TOKEN, RankerPod
from tests.unit.ranker.builders import product_db, publish_bundle

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LIMIT = 4096
"""The pod's body limit on both ports, small so that the tests send little."""
READ_TIMEOUT_S = 30.0
"""Far above the pod's 1 s header and body timeouts: a read that waits this long has failed."""

BODY: dict[str, Any] = {
    "tenant_id": "acme",
    "context": {"employee_id": 1, "description": "taxi", "amount": 1200, "date": "2026-11-27"},
}


@pytest.fixture(scope="module")
def pod(
    start_ranker: Callable[..., RankerPod], tmp_path_factory: pytest.TempPathFactory
) -> RankerPod:
    work = tmp_path_factory.mktemp("http")
    root = (work / "store").resolve()
    root.mkdir()
    published = publish_bundle(root.as_uri(), work / "src", item_ids=range(1, 41))
    db_path = work / "product.db"
    # t0001 is the tenant of the OpenAPI example, so schemathesis's example case ranks for real.
    product_db(f"sqlite:///{db_path}", {"acme": 40, "t0001": 40, "empty": 0}).close()
    proc = start_ranker(
        database_url=f"sqlite:///{db_path}",
        allowed_roots=root.as_uri(),
        model_uri=published.model_uri,
        features_uri=published.features_uri,
        public_max_body_bytes=str(LIMIT),
        admin_max_body_bytes=str(LIMIT),
        header_timeout_s="1",
        body_timeout_s="1",
        keep_alive_timeout_s="1",
    )
    proc.wait(
        lambda: httpx.get(f"{proc.public_url}/readyz", timeout=2).status_code == 200, 60, "ready"
    )
    return proc


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.create_connection((parts.hostname, parts.port), timeout=READ_TIMEOUT_S)
    return sock


def _read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a socket timeout fails the test)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _response(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return status, headers, json.loads(body)


@pytest.fixture
def ports(pod: RankerPod) -> dict[str, str]:
    return {"public": pod.public_url, "admin": pod.admin_url}


TARGETS = {"public": "POST /v1/rank", "admin": "PUT /admin/v1/bundle"}


# Silent connections -------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["public", "admin"])
@pytest.mark.parametrize(
    "sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"], ids=["nothing", "half-headers"]
)
def test_silent_connections_are_closed(ports: dict[str, str], port: str, sent: bytes) -> None:
    with _connect(ports[port]) as sock:
        sock.sendall(sent)
        assert _read_to_close(sock) == b""  # closed by the server, nothing answered


def test_idle_keep_alive_connections_are_closed(pod: RankerPod) -> None:
    with _connect(pod.public_url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = _response(_read_to_close(sock))
    assert (status, body) == (200, {"status": "ok"})


# Body limits ----------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["public", "admin"])
def test_413_is_answered_before_the_body_is_sent(ports: dict[str, str], port: str) -> None:
    """100 MB announced, none sent (and no token on the admin port): the answer comes at once."""
    with _connect(ports[port]) as sock:
        sock.sendall(
            f"{TARGETS[port]} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000000\r\n\r\n".encode()
        )
        status, headers, body = _response(_read_to_close(sock))
    assert status == 413
    assert headers["connection"] == "close"
    assert body["error"] == "body_too_large"
    assert body["detail"] == {"max_bytes": LIMIT}


@pytest.mark.parametrize("port", ["public", "admin"])
def test_413_for_a_chunked_body_that_never_ends(ports: dict[str, str], port: str) -> None:
    """Chunks past the limit and no final chunk: answered while the body is still open."""
    chunk = b"1000\r\n" + b" " * 0x1000 + b"\r\n"  # 4096 bytes each
    with _connect(ports[port]) as sock:
        sock.sendall(
            f"{TARGETS[port]} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
            + chunk * 2
        )
        status, headers, body = _response(_read_to_close(sock))
    assert status == 413
    assert headers["connection"] == "close"
    assert body["error"] == "body_too_large"


@pytest.mark.parametrize("port", ["public", "admin"])
def test_a_body_that_stops_arriving_is_408(ports: dict[str, str], port: str) -> None:
    with _connect(ports[port]) as sock:
        sock.sendall(
            f"{TARGETS[port]} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n{}".encode()
        )
        status, headers, body = _response(_read_to_close(sock))
    assert status == 408
    assert headers["connection"] == "close"
    assert body["error"] == "request_timeout"


def test_the_pod_still_serves_after_all_that(pod: RankerPod) -> None:
    r = pod.rank(BODY)
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == 5


# Schemathesis against both live ports ---------------------------------------------------

SCHEMATHESIS_CONFIG = """
# Both ports' OpenAPI documents, every check, bounded and reproducible.
[generation]
database = "none"

[phases.fuzzing]
enabled = true

[checks.positive_data_acceptance]
# A schema-valid body can still be refused for what only the pod knows: an unknown tenant (404),
# a URI outside RANKSWAP_ALLOWED_ROOTS or not an artifact path (400).
expected-statuses = ["2xx", "400", "404"]
"""


@pytest.fixture
def schemathesis_config(tmp_path: Path) -> Path:
    path = tmp_path / "schemathesis.toml"
    path.write_text(SCHEMATHESIS_CONFIG, encoding="utf-8")
    return path


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("port", "document", "auth"),
    [("public", "/openapi.json", False), ("admin", "/admin/v1/openapi.json", True)],
)
def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    ports: dict[str, str],
    schemathesis_config: Path,
    tmp_path: Path,
    port: str,
    document: str,
    auth: bool,
) -> None:
    cli = Path(sys.executable).parent / "schemathesis"
    command = [
        str(cli),
        "--config-file",
        str(schemathesis_config),
        "run",
        f"{ports[port]}{document}",
        "--checks",
        "all",
        "--max-examples",
        "40",
        "--seed",
        "15",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--no-color",
    ]
    if auth:
        command += ["--header", f"Authorization: Bearer {TOKEN}"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=560, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-3000:]
