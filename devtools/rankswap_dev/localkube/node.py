"""A real single-node Kubernetes cluster on this machine: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, containerd (+ runc, CNI bridge), kubelet, kube-proxy.

Pods are real containers started by kubelet from images imported into containerd. Everything
runs inside a network namespace of its own, joined to this machine by one veth link
(:mod:`rankswap_dev.localkube._nodeconfig`), so pod and Service addresses exist nowhere else. Needs
root (network namespaces, mounts, cgroups). See docs/NODE.md.

>>> with NodeCluster(images=[archive]) as node:          # doctest: +SKIP
...     node.kubectl("get", "nodes")

:class:`ControlPlane` (processes on loopback, fake pods) stays the fast harness; this one is
the proof for the deployables (images, chart, probes, RBAC in a pod).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from ._binaries import ensure_binaries
from ._certs import Pki, generate_pki
from ._cluster import Cluster, kubeconfig_dict, write_kubeconfig
from ._controlplane import (
    _LIVE,
    _LIVE_LOCK,
    _alive,
    _die_with_parent_fn,
    _install_cleanup_handlers,
    _tail,
    kill_process_group,
)
from ._nodeconfig import (
    PAUSE_IMAGE,
    NodeConfigError,
    NodeNetwork,
    choose_network,
    cni_conflist,
    containerd_config,
    corefile,
    kube_proxy_config,
    kubelet_config,
    mounts_below,
    yaml_of,
)

NODE_BINARIES = (
    "kubelet",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "coredns",
    "kube-router",
)
DEFAULT_START_TIMEOUT = 180.0
KUBE_ROUTER_HEALTH_PORT = 20244
RUNC = "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"


class NodeError(RuntimeError):
    """The node cluster failed to start or to stop cleanly (the message names the log)."""


def node_tools_script() -> Path:
    return Path(__file__).resolve().parents[3] / "scripts" / "node-tools.sh"


def ensure_node_binaries(bin_dir: Path) -> Path:
    """Build (or find cached) the node binaries into ``bin_dir`` via scripts/node-tools.sh."""
    proc = subprocess.run(
        ["bash", str(node_tools_script())],
        env=dict(os.environ, KUBE_TOOLS_BIN_DIR=str(bin_dir)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise NodeError(f"{node_tools_script()} failed with exit code {proc.returncode}")
    missing = [n for n in NODE_BINARIES if not os.access(bin_dir / n, os.X_OK)]
    if missing:
        raise NodeError(f"{bin_dir} lacks {', '.join(missing)} after {node_tools_script()}")
    return bin_dir


def _run(argv: Sequence[str], *, timeout: float = 60.0, check: bool = True) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)} exited with {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _used_networks() -> list[str]:
    used: list[str] = []
    for argv in (["ip", "-j", "route", "show", "table", "all"], ["ip", "-j", "addr"]):
        with contextlib.suppress(NodeError, ValueError):
            for entry in json.loads(_run(argv) or "[]"):
                if "dst" in entry and entry["dst"] not in ("default", ""):
                    used.append(entry["dst"])
                for addr in entry.get("addr_info", []):
                    used.append(f"{addr['local']}/{addr['prefixlen']}")
    return used


def _netns_names() -> list[str]:
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line]


class NodeCluster(Cluster):
    """A real single-node cluster in its own network namespace; ``start()``/``stop()`` or
    ``with``. ``images``: OCI archives imported into containerd before kubelet starts.

    ``work_dir`` (a temporary directory unless given) holds the PKI, etcd data, containerd's
    root and state, kubelet's root, the CNI configuration, ``logs/<component>.log`` and the
    admin ``kubeconfig`` (server ``https://<node_ip>:6443``, reachable from this machine).
    """

    is_local = True

    def __init__(
        self,
        work_dir: Path | None = None,
        *,
        bin_dir: Path | None = None,
        images: Sequence[Path] = (),
        start_timeout: float = DEFAULT_START_TIMEOUT,
        cluster_dns: bool = True,
        network_policy: bool = True,
    ) -> None:
        self._own_work_dir = work_dir is None
        # Short: unix socket paths (containerd's) must stay under 108 bytes.
        wd = Path(tempfile.mkdtemp(prefix="rsnode-")) if work_dir is None else work_dir
        super().__init__(wd / "kubeconfig", bin_dir=bin_dir, work_dir=wd)
        self.images = [Path(p) for p in images]
        self.cluster_dns = cluster_dns
        self.network_policy = network_policy
        self.start_timeout = start_timeout
        self.net: NodeNetwork | None = None
        self.pki: Pki | None = None
        self.timings: dict[str, float] = {}
        self._procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self._cgroup_dirs: list[Path] = []
        self._lock = threading.Lock()

    # -- paths and names ---------------------------------------------------------------------
    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def netns_path(self) -> Path:
        assert self.net is not None
        return Path("/run/netns") / self.net.name

    @property
    def server(self) -> str:
        assert self.net is not None
        return self.net.server

    @property
    def node_name(self) -> str:
        assert self.net is not None
        return self.net.name

    def in_netns(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the node's network namespace (and only that namespace: the
        mount namespace stays the machine's, so kubelet's and containerd's mounts agree)."""
        return ["nsenter", f"--net={self.netns_path}", "--", *argv]

    def ctr(self, *args: str, timeout: float = 120.0) -> str:
        assert self.bin_dir is not None
        return _run(
            [
                str(self.bin_dir / "ctr"),
                "--address",
                str(self.work_dir / "containerd.sock"),
                "-n",
                "k8s.io",
                *args,
            ],
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return (
            f"NodeCluster(server={self.net.server if self.net else '-'}, work_dir={self.work_dir})"
        )

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> NodeCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> NodeCluster:
        """Start every component; return once the node is Ready and ``default`` has its
        ServiceAccount (so pods are admitted)."""
        if os.geteuid() != 0:
            raise NodeError("a real node needs root (network namespaces, mounts, cgroups)")
        if self._procs:
            raise NodeError("already started")
        t0 = time.monotonic()
        if self.bin_dir is None:
            self.bin_dir = ensure_binaries()
        ensure_node_binaries(self.bin_dir)
        self.timings["binaries"] = time.monotonic() - t0
        _install_cleanup_handlers()
        with _LIVE_LOCK:
            _LIVE.add(self)  # stop() on exit and on SIGTERM
        try:
            t1 = time.monotonic()
            self.log_dir.mkdir(parents=True, exist_ok=True)
            try:
                self.net = choose_network(_used_networks(), _netns_names())
            except NodeConfigError as exc:
                raise NodeError(str(exc)) from exc
            self._make_network()
            self.pki = generate_pki(
                self.work_dir / "pki", service_ip=self.net.service_ip, extra_ips=[self.net.node_ip]
            )
            self._write_kubeconfig()
            self._start_control_plane()
            self._start_containerd()
            self._import_images()
            if self.cluster_dns:
                self._start_coredns()
            self._start_kubelet()
            self._start_kube_proxy()
            self._wait_node_ready()
            if self.network_policy:
                self._start_kube_router()
            self.timings["start"] = time.monotonic() - t1
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process, remove containers, unmount, delete the netns (its bridge, veth
        and iptables rules go with it), remove the cgroups and the temporary work dir."""
        with self._lock:
            procs = {name: (popen, log) for name, popen, log in self._procs}
            errors: list[str] = []
            for name in (
                "kubelet",
                "kube-router",
                "kube-proxy",
                "coredns",
                "kube-scheduler",
                "kube-controller-manager",
            ):
                if name in procs:
                    kill_process_group(procs.pop(name)[0].pid, grace=5.0)
            if "containerd" in procs:
                with contextlib.suppress(Exception):
                    self._remove_containers()
                kill_process_group(procs.pop("containerd")[0].pid, grace=5.0)
            self._kill_shims()
            for name in ("kube-apiserver", "etcd"):
                if name in procs:
                    kill_process_group(procs.pop(name)[0].pid, grace=5.0)
            for popen, _log in procs.values():
                kill_process_group(popen.pid, grace=5.0)
            for _name, popen, _log in self._procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(timeout=5)
            self._procs.clear()
            errors += self._unmount_all()
            if self.net is not None:
                if self.netns_path.exists():
                    with contextlib.suppress(NodeError):
                        _run(["ip", "netns", "del", self.net.name])
                with contextlib.suppress(NodeError):  # gone with the netns, normally
                    _run(["ip", "link", "del", self.net.host_link], check=False)
            errors += self._remove_cgroups()
            with _LIVE_LOCK:
                _LIVE.discard(self)
            if self._own_work_dir and self.work_dir.exists() and not errors:
                shutil.rmtree(self.work_dir, ignore_errors=True)
            if errors:
                raise NodeError("teardown incomplete: " + "; ".join(errors))

    # -- network ---------------------------------------------------------------------------
    def _make_network(self) -> None:
        assert self.net is not None
        n = self.net
        ns = n.name
        _run(["ip", "netns", "add", ns])
        _run(["ip", "link", "add", n.host_link, "type", "veth", "peer", "name", n.node_link])
        _run(["ip", "link", "set", n.node_link, "netns", ns])
        _run(["ip", "addr", "add", f"{n.host_ip}/30", "dev", n.host_link])
        _run(["ip", "link", "set", n.host_link, "up"])
        # Pods and Services are reached from this machine through the node, and only from it.
        _run(["ip", "route", "add", n.pod_cidr, "via", n.node_ip, "dev", n.host_link])
        _run(["ip", "route", "add", n.service_cidr, "via", n.node_ip, "dev", n.host_link])
        inside = self.in_netns
        _run(inside(["ip", "link", "set", "lo", "up"]))
        _run(inside(["ip", "addr", "add", f"{n.node_ip}/30", "dev", n.node_link]))
        _run(inside(["ip", "link", "set", n.node_link, "up"]))
        # Forwarding between the bridge and the link, inside the netns only (per-netns sysctl).
        _run(inside(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]))
        cni_dir = self.work_dir / "cni" / "net.d"
        cni_dir.mkdir(parents=True, exist_ok=True)
        (cni_dir / "10-rankswap.conflist").write_text(
            json.dumps(cni_conflist(n, self.work_dir), indent=2) + "\n"
        )

    # -- processes -------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], *, env: dict[str, str] | None = None) -> None:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            out.flush()
            popen = subprocess.Popen(
                self.in_netns(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent_fn(),
                close_fds=True,
            )
        self._procs.append((name, popen, log))

    def _await(self, name: str, ready: Callable[[], bool], what: str) -> None:
        popen, log = next((p, lg) for n, p, lg in self._procs if n == name)
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = popen.poll()
            if code is not None:
                raise NodeError(f"{name} exited with code {code}; log: {log}\n{_tail(log)}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise NodeError(
                    f"{what} not ready after {self.start_timeout:.0f} s; log: {log}\n{_tail(log)}"
                )
            time.sleep(0.25)

    def _ok(self, *args: str) -> bool:
        return self.kubectl(*args, check=False, timeout=10).returncode == 0

    def _write_kubeconfig(self) -> None:
        assert self.pki is not None and self.net is not None
        config = kubeconfig_dict(
            server=self.net.server,
            ca_pem=self.pki.ca.cert.read_bytes(),
            user="admin",
            user_entry={
                "client-certificate-data": base64.b64encode(
                    self.pki.admin.cert.read_bytes()
                ).decode(),
                "client-key-data": base64.b64encode(self.pki.admin.key.read_bytes()).decode(),
            },
            context=self.net.name,
        )
        write_kubeconfig(self.kubeconfig, config)

    def _start_control_plane(self) -> None:
        assert self.bin_dir is not None and self.pki is not None and self.net is not None
        b, pki, n = self.bin_dir, self.pki, self.net
        self._spawn(
            "etcd",
            [
                str(b / "etcd"),
                "--name=node",
                f"--data-dir={self.work_dir / 'etcd'}",
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=node=http://127.0.0.1:2380",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(b / "kube-apiserver"),
                "--etcd-servers=http://127.0.0.1:2379",
                "--bind-address=0.0.0.0",
                f"--advertise-address={n.node_ip}",
                "--secure-port=6443",
                f"--cert-dir={self.work_dir / 'pki'}",
                f"--tls-cert-file={pki.serving.cert}",
                f"--tls-private-key-file={pki.serving.key}",
                f"--client-ca-file={pki.ca.cert}",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={n.service_cidr}",
                f"--service-account-issuer={n.server}",
                f"--service-account-key-file={pki.sa_public_key}",
                f"--service-account-signing-key-file={pki.sa_private_key}",
                f"--kubelet-client-certificate={pki.admin.cert}",
                f"--kubelet-client-key={pki.admin.key}",
                "--kubelet-preferred-address-types=InternalIP",
                "--allow-privileged=true",
                "--profiling=false",
            ],
        )
        self._await("kube-apiserver", lambda: self._ok("get", "--raw=/readyz"), "kube-apiserver")
        kubeconfig = str(self.kubeconfig)
        self._spawn(
            "kube-controller-manager",
            [
                str(b / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--service-account-private-key-file={pki.sa_private_key}",
                f"--root-ca-file={pki.ca.cert}",
                f"--cluster-signing-cert-file={pki.ca.cert}",
                f"--cluster-signing-key-file={pki.ca.key}",
                f"--service-cluster-ip-range={n.service_cidr}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(b / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
            ],
        )
        self._await(
            "kube-controller-manager",
            lambda: self._ok("get", "serviceaccount", "default", "-n", "default"),
            "ServiceAccount default/default (kube-controller-manager)",
        )

    def _start_containerd(self) -> None:
        assert self.bin_dir is not None
        config = self.work_dir / "containerd.toml"
        config.write_text(containerd_config(self.work_dir, runc=RUNC, cni_bin_dir=CNI_BIN_DIR))
        # The shim is found on PATH.
        env = dict(os.environ, PATH=f"{self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        self._spawn("containerd", [str(self.bin_dir / "containerd"), f"--config={config}"], env=env)
        sock = self.work_dir / "containerd.sock"

        def answers() -> bool:
            if not sock.exists():
                return False
            try:
                self.ctr("version", timeout=10)
            except (NodeError, subprocess.TimeoutExpired):
                return False
            return True

        self._await("containerd", answers, "containerd")

    def _import_images(self) -> None:
        t0 = time.monotonic()
        assert self.bin_dir is not None
        archives = [self.bin_dir / "pause.oci.tar", *self.images]
        for archive in archives:
            if not archive.is_file():
                raise NodeError(f"image archive {archive} missing (make images)")
            self.ctr("images", "import", "--local", str(archive), timeout=600)
        listed = self.ctr("images", "list", "-q")
        if PAUSE_IMAGE not in listed.split():
            raise NodeError(f"{PAUSE_IMAGE} not in containerd after import:\n{listed}")
        self.timings["import_images"] = time.monotonic() - t0

    def _cgroup_root(self) -> str:
        """Pre-create ``/<name>`` in every cgroup v1 hierarchy: kubelet's cgroup root, so this
        node's cgroups are apart from the machine's and removed with it."""
        assert self.net is not None
        root = Path("/sys/fs/cgroup")
        for hierarchy in sorted(root.iterdir()):
            if hierarchy.is_dir() and not hierarchy.is_symlink() and hierarchy.name != "unified":
                d = hierarchy / self.net.name
                with contextlib.suppress(OSError):
                    d.mkdir(exist_ok=True)
                    self._cgroup_dirs.append(d)
        return "/" + self.net.name

    def _start_kubelet(self) -> None:
        assert self.bin_dir is not None and self.net is not None
        config = self.work_dir / "kubelet.yaml"
        config.write_text(
            yaml_of(
                kubelet_config(
                    self.net,
                    self.work_dir,
                    cgroup_root=self._cgroup_root(),
                    cluster_dns=self.cluster_dns,
                )
            )
        )
        root = self.work_dir / "kubelet"
        root.mkdir(exist_ok=True)
        self._spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={config}",
                f"--kubeconfig={self.kubeconfig}",
                f"--root-dir={root}",
                f"--hostname-override={self.net.name}",
                f"--node-ip={self.net.node_ip}",
                "--v=1",
            ],
        )

    def _start_coredns(self) -> None:
        assert self.bin_dir is not None and self.net is not None
        config = self.work_dir / "Corefile"
        config.write_text(corefile(self.net, self.kubeconfig))
        self._spawn("coredns", [str(self.bin_dir / "coredns"), "-conf", str(config)])

    def _start_kube_proxy(self) -> None:
        assert self.bin_dir is not None and self.net is not None
        config = self.work_dir / "kube-proxy.yaml"
        config.write_text(yaml_of(kube_proxy_config(self.net, self.kubeconfig)))
        self._spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={config}"])

    def _start_kube_router(self) -> None:
        """kube-router's network policy controller only (no routing, no service proxy): it
        turns NetworkPolicies into iptables + ipset rules inside the node's netns, so the chart's
        policies are enforced (the CNI bridge plugin enforces none)."""
        assert self.bin_dir is not None and self.net is not None
        self._spawn(
            "kube-router",
            [
                str(self.bin_dir / "kube-router"),
                f"--kubeconfig={self.kubeconfig}",
                f"--hostname-override={self.net.name}",
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                f"--service-cluster-ip-range={self.net.service_cidr}",
                f"--health-port={KUBE_ROUTER_HEALTH_PORT}",
                "--metrics-port=0",
                "--v=1",
            ],
        )
        url = f"http://{self.net.node_ip}:{KUBE_ROUTER_HEALTH_PORT}/healthz"
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def healthy() -> bool:
            try:
                with direct.open(url, timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        self._await("kube-router", healthy, "kube-router's network policy controller")

    def _wait_node_ready(self) -> None:
        assert self.net is not None
        name = self.net.name

        def ready() -> bool:
            out = self.kubectl(
                "get",
                "node",
                name,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                check=False,
                timeout=10,
            )
            return out.returncode == 0 and out.stdout.strip() == "True"

        self._await("kubelet", ready, f"node {name} Ready")

    # -- teardown helpers --------------------------------------------------------------------
    def _remove_containers(self) -> None:
        for task in self.ctr("tasks", "list", "-q", timeout=20).split():
            with contextlib.suppress(NodeError, subprocess.TimeoutExpired):
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, timeout=20)
        time.sleep(0.5)
        for task in self.ctr("tasks", "list", "-q", timeout=20).split():
            with contextlib.suppress(NodeError, subprocess.TimeoutExpired):
                self.ctr("tasks", "delete", "-f", task, timeout=20)
        for container in self.ctr("containers", "list", "-q", timeout=20).split():
            with contextlib.suppress(NodeError, subprocess.TimeoutExpired):
                self.ctr("containers", "delete", container, timeout=20)

    def _kill_shims(self) -> None:
        """containerd's shims outlive it by design: stop the ones serving this work dir."""
        marker = str(self.work_dir / "containerd.sock")
        for proc_dir in Path("/proc").iterdir():
            if not proc_dir.name.isdigit():
                continue
            try:
                cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "containerd-shim-runc-v2" in cmdline and marker in cmdline:
                pid = int(proc_dir.name)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, 9)
                deadline = time.monotonic() + 5
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)

    def _unmount_all(self) -> list[str]:
        errors: list[str] = []
        for _ in range(3):
            points = mounts_below(Path("/proc/self/mountinfo").read_text(), [self.work_dir])
            if not points:
                return []
            for point in points:
                proc = subprocess.run(
                    ["umount", "--lazy", point], capture_output=True, text=True, check=False
                )
                if proc.returncode != 0 and "not mounted" not in proc.stderr:
                    errors.append(f"umount {point}: {proc.stderr.strip()}")
        left = mounts_below(Path("/proc/self/mountinfo").read_text(), [self.work_dir])
        return errors + [f"still mounted: {p}" for p in left]

    def _remove_cgroups(self) -> list[str]:
        """The cgroup root ``/<name>`` of every hierarchy, the ones made here and the ones
        kubelet and runc made (cgroup v2's ``unified`` mount included)."""
        errors: list[str] = []
        if self.net is None:
            return errors
        tops = {*self._cgroup_dirs, *Path("/sys/fs/cgroup").glob(f"*/{self.net.name}")}
        for top in sorted(tops):
            if not top.is_dir():
                continue
            # Leaves first; a cgroup dir is removed with rmdir (its files are virtual).
            dirs = sorted(
                (Path(d) for d, _subdirs, _files in os.walk(top)),
                key=lambda p: -len(p.parts),
            )
            for d in dirs:
                try:
                    d.rmdir()
                except OSError as exc:
                    errors.append(f"rmdir {d}: {exc.strerror}")
        self._cgroup_dirs.clear()
        return errors
