"""The real tier (marker ``node``, `make test-node`): a real single-node cluster, the images built
by `make images`, and the product DB and S3 API reachable from pods.

PostgreSQL and moto listen on the host side of the node's veth link (and loopback), the only
address pods can reach on this machine; pods reach them by IP, so no cluster DNS is needed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.services import PostgresServer, stop_process, wait_for_port

from rankswap.artifacts.store import reset_s3_client
from rankswap_dev.localkube import cache_root
from rankswap_dev.localkube.node import NodeCluster

REPO = Path(__file__).resolve().parents[2]
IMAGE_TARGETS = ("ranker", "operator", "training")


def _image_archives() -> dict[str, Path]:
    """OCI archives of the images (scripts/images.sh: cached, rebuilt when sources change)."""
    env = dict(os.environ, IMAGES=" ".join(IMAGE_TARGETS))
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "images.sh")],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=3000,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/images.sh failed:\n{proc.stderr[-4000:]}")
    oci = cache_root() / "images" / "oci"
    return {t: (oci / f"{t}.tar").resolve() for t in IMAGE_TARGETS}


@pytest.fixture(scope="session")
def images() -> dict[str, Path]:
    return _image_archives()


@pytest.fixture(scope="session")
def node(images: dict[str, Path]) -> Iterator[NodeCluster]:
    cluster = NodeCluster(images=list(images.values()))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


class HostPostgres(PostgresServer):
    """The tests' PostgreSQL, listening on loopback and on the node link's host address, and
    trusting connections from the node's pods."""

    def __init__(self, host_ip: str, pod_cidr: str) -> None:
        super().__init__()
        self.host_ip, self.pod_cidr = host_ip, pod_cidr

    @property
    def pod_url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host_ip}:{self.port}/postgres"

    def start(self) -> None:
        self.sockdir.mkdir(parents=True)
        if self.prefix:
            import shutil

            shutil.chown(self.workdir, "postgres")
            shutil.chown(self.sockdir, "postgres")
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
            "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        hba = self.datadir / "pg_hba.conf"
        hba.write_text(
            hba.read_text()
            + f"host all all {self.pod_cidr} trust\nhost all all {self.host_ip}/32 trust\n"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), "-w",
            "-t", "60", "-o",
            f"-h 127.0.0.1,{self.host_ip} -p {self.port} -k {self.sockdir} -F -c fsync=off",
            "start",
        )  # fmt: skip


@pytest.fixture(scope="session")
def node_postgres(node: NodeCluster) -> Iterator[HostPostgres]:
    assert node.net is not None
    server = HostPostgres(node.net.host_ip, node.net.pod_cidr)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


_AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture(scope="session")
def node_moto(node: NodeCluster) -> Iterator[str]:
    """A moto S3 server on the node link's host address; AWS settings point at it."""
    assert node.net is not None
    from tests.support.services import free_port

    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="rankswap-node-moto-"))
    log = work / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", node.net.host_ip, "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    try:
        with contextlib.suppress(Exception):
            pass
        _wait_tcp(node.net.host_ip, port, proc, log)
        endpoint = f"http://{node.net.host_ip}:{port}"
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        reset_s3_client()
        yield endpoint
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_s3_client()
        stop_process(proc)


def _wait_tcp(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    import socket
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto exited with {proc.returncode}; see {log}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"moto did not listen on {host}:{port}; see {log}")


__all__ = ["HostPostgres", "wait_for_port"]
