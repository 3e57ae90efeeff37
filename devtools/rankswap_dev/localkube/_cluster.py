"""What tests and the demo need from any cluster: kubeconfig, kubectl, helm, identities."""

from __future__ import annotations

import base64
import importlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class KubectlError(RuntimeError):
    """A kubectl or helm command exited non-zero."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"{' '.join(self.argv)} exited with {returncode}: {stderr.strip() or stdout.strip()}"
        )


def kubeconfig_dict(
    *,
    server: str,
    ca_pem: bytes,
    user: str,
    user_entry: Mapping[str, str],
    context: str = "rankswap-local",
    namespace: str | None = None,
) -> dict[str, Any]:
    """A kubeconfig with everything embedded (portable, no file references)."""
    ctx: dict[str, str] = {"cluster": context, "user": user}
    if namespace:
        ctx["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": dict(user_entry)}],
        "contexts": [{"name": context, "context": ctx}],
        "current-context": context,
    }


def write_kubeconfig(path: Path, config: Mapping[str, Any]) -> Path:
    """Write a kubeconfig (JSON, which is valid YAML) readable only by its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


class Cluster:
    """A Kubernetes API server reachable through a kubeconfig file.

    ``is_local`` is True for a :class:`~rankswap_dev.localkube.ControlPlane` started by this
    process (fake pods, certificate identities and free ports are then allowed), False for an
    existing cluster given explicitly by the user.
    """

    is_local: bool = False

    def __init__(self, kubeconfig: Path, *, bin_dir: Path | None, work_dir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.bin_dir = bin_dir
        self.work_dir = work_dir

    # -- tools -------------------------------------------------------------------------------
    def tool_path(self, name: str) -> str:
        """Absolute path of kubectl/helm: from ``bin_dir`` if it has one, else from PATH."""
        if self.bin_dir is not None and os.access(self.bin_dir / name, os.X_OK):
            return str(self.bin_dir / name)
        found = shutil.which(name)
        if found is None:
            raise FileNotFoundError(f"{name} not found in {self.bin_dir} nor on PATH")
        return found

    def tool_env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        """Environment for kubectl/helm: this cluster's KUBECONFIG, helm's own XDG dirs."""
        helm_home = self.work_dir / "helm"
        env = dict(os.environ)
        env.update(
            KUBECONFIG=str(kubeconfig or self.kubeconfig),
            XDG_CACHE_HOME=str(helm_home / "cache"),
            XDG_CONFIG_HOME=str(helm_home / "config"),
            XDG_DATA_HOME=str(helm_home / "data"),
        )
        return env

    def _run(
        self,
        tool: str,
        args: Sequence[str],
        *,
        input: str | None,
        check: bool,
        timeout: float,
        kubeconfig: Path | None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.tool_path(tool), *args]
        proc = subprocess.run(
            argv,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.tool_env(kubeconfig),
            check=False,
        )
        if check and proc.returncode != 0:
            raise KubectlError(argv, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (or with another identity's ``kubeconfig``)."""
        return self._run(
            "kubectl", args, input=input, check=check, timeout=timeout, kubeconfig=kubeconfig
        )

    def helm(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm against this cluster, with XDG dirs of its own under ``work_dir``."""
        return self._run(
            "helm", args, input=input, check=check, timeout=timeout, kubeconfig=kubeconfig
        )

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for this cluster (admin unless ``kubeconfig``)."""
        # Imported lazily (the CLI does not need it); the package ships no type hints.
        config: Any = importlib.import_module("kubernetes.config")
        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    # -- identities --------------------------------------------------------------------------
    def _current_cluster(self) -> tuple[str, bytes]:
        """Server URL and CA bundle of the kubeconfig's current context."""
        raw = self.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout
        cluster = json.loads(raw)["clusters"][0]["cluster"]
        if "certificate-authority-data" in cluster:
            ca = base64.b64decode(cluster["certificate-authority-data"])
        elif "certificate-authority" in cluster:
            ca = Path(cluster["certificate-authority"]).read_bytes()
        else:
            ca = b""
        return str(cluster["server"]), ca

    def service_account_kubeconfig(
        self, namespace: str, name: str, *, duration: str = "1h", create: bool = True
    ) -> Path:
        """A kubeconfig authenticating as ServiceAccount ``namespace/name`` (TokenRequest API).

        Works on the local control plane and on an existing cluster alike. The account is
        created when ``create`` is set and it does not exist yet; its rights are whatever
        Roles are bound to it, so this is the identity for RBAC tests.
        """
        if create:
            manifest = json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": name, "namespace": namespace},
                    "automountServiceAccountToken": False,
                }
            )
            self.kubectl("apply", "-f", "-", input=manifest)
        token = self.kubectl(
            "create", "token", name, "-n", namespace, f"--duration={duration}"
        ).stdout.strip()
        server, ca = self._current_cluster()
        config = kubeconfig_dict(
            server=server,
            ca_pem=ca,
            user=f"system:serviceaccount:{namespace}:{name}",
            user_entry={"token": token},
            namespace=namespace,
        )
        if not ca:
            del config["clusters"][0]["cluster"]["certificate-authority-data"]
        path = self.work_dir / "users" / f"sa-{namespace}-{name}.kubeconfig"
        return write_kubeconfig(path, config)


class ExistingCluster(Cluster):
    """A cluster the user gave explicitly (e.g. ``RANKSWAP_TEST_KUBECONFIG=$KUBECONFIG``).

    Nothing is started or stopped; the tests that fake pods by patching pod status skip here.
    """

    is_local = False

    def __init__(
        self, kubeconfig: Path, *, bin_dir: Path | None = None, work_dir: Path | None = None
    ) -> None:
        if not kubeconfig.is_file():
            raise FileNotFoundError(f"kubeconfig {kubeconfig} does not exist")
        super().__init__(
            kubeconfig,
            bin_dir=bin_dir,
            work_dir=work_dir or Path(tempfile.mkdtemp(prefix="rankswap-kube-")),
        )

    @property
    def server(self) -> str:
        return self._current_cluster()[0]

    def __repr__(self) -> str:
        return f"ExistingCluster(kubeconfig={self.kubeconfig!s})"
