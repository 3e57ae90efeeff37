"""etcd + kube-apiserver as local processes on free loopback ports (the envtest approach)."""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Protocol

from rankswap_dev.wait import WaitTimeout, wait_until

from ._binaries import ensure_binaries
from ._certs import Pki, generate_pki
from ._cluster import Cluster, kubeconfig_dict, write_kubeconfig

DEFAULT_START_TIMEOUT = 90.0
STOP_GRACE_SECONDS = 10.0
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"


class ControlPlaneError(RuntimeError):
    """The control plane failed to start (the message names the log file to read)."""


# -- process helpers --------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent_fn() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGKILL the child when its parent dies (no orphans even
    when the test process is killed with SIGKILL). Resolved before fork: the child only calls."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def _preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return _preexec


def _free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def kill_process_group(pid: int, *, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: not _alive(pid), wait, 0.05, what=f"process group {pid} gone")
            return


# -- cleanup registry: atexit + SIGTERM/SIGHUP --------------------------------------------------


class _Stoppable(Protocol):
    def stop(self) -> None: ...


# What stop() runs for on exit / SIGTERM: ControlPlanes and NodeClusters of this process.
_LIVE: set[_Stoppable] = set()
_LIVE_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False


def _stop_all() -> None:
    with _LIVE_LOCK:
        planes = list(_LIVE)
    for plane in planes:
        with contextlib.suppress(Exception):
            plane.stop()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # Turn a termination signal into KeyboardInterrupt, as if Ctrl-C had been pressed, so that
    # `finally`, context managers, pytest's fixture teardown (pytest stops the session on
    # KeyboardInterrupt, but would report SystemExit as one failed test and go on) and atexit
    # all run; the default action would kill us without any cleanup.
    raise KeyboardInterrupt(f"signal {signum}")


def _install_cleanup_handlers() -> None:
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(_stop_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        # Only replace the default action; never override a handler the application set.
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _on_signal)


# -- the control plane --------------------------------------------------------------------------


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes] | None
    pid: int
    log: Path
    argv0: str


class ControlPlane(Cluster):
    """etcd + kube-apiserver on free loopback ports, with a throwaway PKI and a kubeconfig.

    >>> with ControlPlane() as cp:                           # doctest: +SKIP
    ...     cp.kubectl("get", "namespaces")

    ``work_dir`` holds ``pki/``, ``etcd/``, ``logs/{etcd,kube-apiserver}.log``, the admin
    ``kubeconfig``, per-identity kubeconfigs under ``users/`` and ``state.json``. A temporary
    directory is used (and removed by :meth:`stop`) when none is given.

    ``detached=True`` is for ``python -m rankswap_dev.localkube up``: the processes outlive this
    Python process and are stopped later from ``state.json`` (:func:`stop_from_state`).
    Otherwise they die with it: :meth:`stop` on exit, on SIGTERM/SIGHUP, and
    ``PR_SET_PDEATHSIG`` if this process is killed outright.
    """

    is_local = True

    def __init__(
        self,
        work_dir: Path | None = None,
        *,
        bin_dir: Path | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        detached: bool = False,
        extra_apiserver_args: Sequence[str] = (),
        kubeconfig_copy: Path | None = None,
    ) -> None:
        self._own_work_dir = work_dir is None
        wd = Path(tempfile.mkdtemp(prefix="rankswap-localkube-")) if work_dir is None else work_dir
        super().__init__(wd / "kubeconfig", bin_dir=bin_dir, work_dir=wd)
        self.start_timeout = start_timeout
        self.detached = detached
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.kubeconfig_copy = kubeconfig_copy
        self.pki: Pki | None = None
        self.etcd_url = ""
        self.server = ""
        self.startup_seconds = 0.0
        self._procs: list[_Proc] = []
        self._lock = threading.Lock()

    # -- paths -----------------------------------------------------------------------------
    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def state_file(self) -> Path:
        return self.work_dir / "state.json"

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(_alive(p.pid) for p in self._procs)

    def __repr__(self) -> str:
        return f"ControlPlane(server={self.server or '-'}, work_dir={self.work_dir})"

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        """Start etcd and kube-apiserver; return once /readyz answers and `default` exists."""
        if self._procs:
            raise ControlPlaneError("already started")
        if self.bin_dir is None:
            self.bin_dir = ensure_binaries()
        t0 = time.monotonic()
        if not self.detached:
            _install_cleanup_handlers()
            with _LIVE_LOCK:
                _LIVE.add(self)
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.pki = generate_pki(self.work_dir / "pki", service_ip=SERVICE_IP)
            for attempt in range(3):
                etcd_port, peer_port, api_port = _free_ports(3)
                try:
                    self._start_etcd(etcd_port, peer_port)
                    self._start_apiserver(api_port)
                    break
                except _PortTaken:
                    self._kill_all()
                    if attempt == 2:
                        raise ControlPlaneError("no free ports after 3 attempts") from None
            self._write_kubeconfigs()
            self._wait_default_namespace()
            self._write_state()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop kube-apiserver then etcd (process groups), remove a temporary work dir."""
        with self._lock:
            self._kill_all()
            with _LIVE_LOCK:
                _LIVE.discard(self)
            with contextlib.suppress(FileNotFoundError):
                self.state_file.unlink()
            if self._own_work_dir and self.work_dir.exists():
                shutil.rmtree(self.work_dir, ignore_errors=True)

    def _kill_all(self) -> None:
        for proc in reversed(self._procs):
            kill_process_group(proc.pid)
            if proc.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=5)
        self._procs.clear()

    # -- processes -------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> _Proc:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            out.flush()
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                start_new_session=True,  # own process group: teardown kills the group
                preexec_fn=None if self.detached else _die_with_parent_fn(),
                close_fds=True,
            )
        proc = _Proc(name=name, popen=popen, pid=popen.pid, log=log, argv0=argv[0])
        self._procs.append(proc)
        return proc

    def _await(self, proc: _Proc, ready: Callable[[], bool], what: str) -> None:
        def started() -> bool:
            assert proc.popen is not None
            code = proc.popen.poll()
            if code is not None:
                tail = _tail(proc.log)
                if "address already in use" in tail:
                    raise _PortTaken()
                raise ControlPlaneError(
                    f"{proc.name} exited with code {code} while starting; log: {proc.log}\n{tail}"
                )
            return ready()

        try:
            wait_until(started, self.start_timeout, 0.25, what=what)
        except WaitTimeout:
            raise ControlPlaneError(
                f"{what} not ready after {self.start_timeout:.0f} s; log: {proc.log}\n"
                f"{_tail(proc.log)}"
            ) from None

    def _start_etcd(self, port: int, peer_port: int) -> None:
        assert self.bin_dir is not None
        client = f"http://127.0.0.1:{port}"
        peer = f"http://127.0.0.1:{peer_port}"
        argv = [
            str(self.bin_dir / "etcd"),
            "--name=localkube",
            f"--data-dir={self.work_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=localkube={peer}",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync=true",  # throwaway data: skip fsync, much faster on slow disks
            "--log-level=warn",
        ]
        proc = self._spawn("etcd", argv)
        self.etcd_url = client

        def healthy() -> bool:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/health")
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                return resp.status == 200 and b'"health":"true"' in body
            except OSError:
                return False

        self._await(proc, healthy, f"etcd at {client}")

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        ctx.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
        return ctx

    def _get(self, path: str, ctx: ssl.SSLContext) -> int:
        host, port = self.server.removeprefix("https://").rsplit(":", 1)
        try:
            conn = http.client.HTTPSConnection(host, int(port), timeout=3, context=ctx)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            return status
        except (OSError, ssl.SSLError):
            return 0

    def _start_apiserver(self, port: int) -> None:
        assert self.bin_dir is not None and self.pki is not None
        self.server = f"https://127.0.0.1:{port}"
        pki = self.pki
        argv = [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.work_dir / 'pki'}",
            f"--tls-cert-file={pki.serving.cert}",
            f"--tls-private-key-file={pki.serving.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer={self.server}/",
            f"--service-account-key-file={pki.sa_public_key}",
            f"--service-account-signing-key-file={pki.sa_private_key}",
            # no kube-controller-manager: nothing would create the token/default accounts
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            "--profiling=false",
            *self.extra_apiserver_args,
        ]
        proc = self._spawn("kube-apiserver", argv)
        ctx = self._ssl_context()
        self._await(proc, lambda: self._get("/readyz", ctx) == 200, f"kube-apiserver {self.server}")

    def _wait_default_namespace(self) -> None:
        ctx = self._ssl_context()
        proc = next(p for p in self._procs if p.name == "kube-apiserver")
        self._await(
            proc,
            lambda: self._get("/api/v1/namespaces/default", ctx) == 200,
            "namespace 'default'",
        )

    # -- kubeconfigs & identities ------------------------------------------------------------
    def _client_kubeconfig(self, user: str, cert: Path, key: Path, path: Path) -> Path:
        assert self.pki is not None
        config = kubeconfig_dict(
            server=self.server,
            ca_pem=self.pki.ca.cert.read_bytes(),
            user=user,
            user_entry={
                "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
                "client-key-data": base64.b64encode(key.read_bytes()).decode(),
            },
        )
        return write_kubeconfig(path, config)

    def _write_kubeconfigs(self) -> None:
        assert self.pki is not None
        self._client_kubeconfig("admin", self.pki.admin.cert, self.pki.admin.key, self.kubeconfig)
        if self.kubeconfig_copy is not None:
            self.kubeconfig_copy.parent.mkdir(parents=True, exist_ok=True)
            self.kubeconfig_copy.write_bytes(self.kubeconfig.read_bytes())
            self.kubeconfig_copy.chmod(0o600)

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig for a certificate identity (CN=user, O=groups) signed by the local CA.

        It has no rights beyond what RBAC grants ``user`` or ``groups`` (plus the built-in
        ``system:authenticated`` discovery rules), so it is the identity for RBAC tests.
        """
        if self.pki is None:
            raise ControlPlaneError("control plane not started")
        pair = self.pki.issue_client(user, groups)
        return self._client_kubeconfig(
            user, pair.cert, pair.key, pair.cert.with_suffix(".kubeconfig")
        )

    # -- state for `up` / `down` -------------------------------------------------------------
    def _write_state(self) -> None:
        state: dict[str, Any] = {
            "server": self.server,
            "etcd": self.etcd_url,
            "kubeconfig": str(self.kubeconfig),
            "bin_dir": str(self.bin_dir),
            "processes": [
                {"name": p.name, "pid": p.pid, "log": str(p.log), "argv0": p.argv0}
                for p in self._procs
            ],
        }
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")


class _PortTaken(Exception):
    """A port chosen as free was taken before the server bound it; retry with new ports."""


def read_state(work_dir: Path) -> dict[str, Any] | None:
    """The state.json of a detached control plane, or None."""
    try:
        data: dict[str, Any] = json.loads((work_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return data


def state_alive(state: dict[str, Any]) -> bool:
    """True when every process recorded in ``state`` still runs the recorded binary."""
    procs = state.get("processes", [])
    return bool(procs) and all(
        _alive(int(p["pid"])) and _cmdline(int(p["pid"])).startswith(str(p["argv0"])) for p in procs
    )


def stop_from_state(work_dir: Path) -> bool:
    """Stop a detached control plane recorded in ``work_dir/state.json``; True if one ran."""
    state = read_state(work_dir)
    if state is None:
        return False
    stopped = False
    for p in reversed(state.get("processes", [])):
        pid = int(p["pid"])
        # Only signal the pid if it still runs the binary we started (pids are reused).
        if _alive(pid) and _cmdline(pid).startswith(str(p["argv0"])):
            kill_process_group(pid)
            stopped = True
    with contextlib.suppress(FileNotFoundError):
        (work_dir / "state.json").unlink()
    return stopped
