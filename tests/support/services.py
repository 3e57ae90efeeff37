"""Real services for tests, started as local processes on loopback: PostgreSQL and a moto S3 server.

Each is a context manager that starts the process, waits until it answers (with a deadline and
the log path in the error), and stops it (and removes its files) on exit.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rankswap_dev.wait import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening; see {log}")
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True

    wait_until(
        listening,
        timeout,
        0.05,
        what=f"something listening on 127.0.0.1:{port} (log {log})",
        ignore=(OSError,),
    )


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A real moto S3 API server process on loopback; yields its endpoint URL."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="rankswap-moto-"))
    log = workdir / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, timeout=30, proc=proc, log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def _pg_bindir() -> Path:
    override = os.environ.get("RANKSWAP_PG_BINDIR")
    candidates = [Path(override)] if override else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for found in candidates:
        if (found / "initdb").exists() and (found / "pg_ctl").exists():
            return found
    which = shutil.which("initdb")
    if which:
        return Path(which).resolve().parent
    raise RuntimeError(
        "PostgreSQL server binaries not found (initdb, pg_ctl); install Debian's `postgresql` "
        "package (.ci/run does) or set RANKSWAP_PG_BINDIR"
    )


def _as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root: drop to the `postgres` account when we are root."""
    if os.geteuid() != 0:
        return []
    pwd.getpwnam("postgres")  # KeyError with a clear name if the account is missing
    return ["runuser", "-u", "postgres", "--"]


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free loopback port."""

    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="rankswap-pg-"))
        self.datadir = self.workdir / "data"
        self.sockdir = self.workdir / "sock"
        self.log = self.workdir / "postgres.log"
        self.prefix = _as_postgres_user()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [*self.prefix, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed: {result.stderr.strip() or result.stdout.strip()}"
            )

    def start(self) -> None:
        self.sockdir.mkdir(parents=True)
        if self.prefix:
            shutil.chown(self.workdir, "postgres")
            shutil.chown(self.sockdir, "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k {self.sockdir} -F -c fsync=off -c full_page_writes=off",
            "start",
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-m",
                "immediate",
                "-w",
                "stop",
            )

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
