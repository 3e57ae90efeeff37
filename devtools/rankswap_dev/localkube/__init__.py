"""A real Kubernetes control plane (etcd + kube-apiserver) as local processes, for tests and
the demo, without Docker. See docs/CONTROL_PLANE.md.

Public API:

* :class:`ControlPlane` - start()/stop() or ``with``; ``kubeconfig``, ``server``, ``bin_dir``,
  ``work_dir``, ``kubectl(*args)``, ``helm(*args)``, ``api_client()``,
  ``user_kubeconfig(user, groups)`` (certificate identity) and
  ``service_account_kubeconfig(namespace, name)`` (token identity).
* :class:`ExistingCluster` - the same interface over a kubeconfig the user gave explicitly.
* :func:`ensure_binaries` - builds/unpacks kube-apiserver, etcd, kubectl, helm via
  scripts/kube-tools.sh (cached; honours ``KUBEBUILDER_ASSETS``).
* :func:`default_run_dir`, :func:`stop_from_state` - what ``python -m rankswap_dev.localkube
  up/down`` uses.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._binaries import BinariesError, ensure_binaries, tools_script
from ._cluster import Cluster, ExistingCluster, KubectlError
from ._controlplane import (
    ControlPlane,
    ControlPlaneError,
    read_state,
    state_alive,
    stop_from_state,
)


def cache_root() -> Path:
    """``$RANKSWAP_CACHE`` or ``~/.cache/rankswap``."""
    return Path(os.environ.get("RANKSWAP_CACHE") or Path.home() / ".cache" / "rankswap")


def default_run_dir(name: str = "default") -> Path:
    """Work dir of the detached control plane ``name`` (kubeconfig at ``<dir>/kubeconfig``)."""
    return cache_root() / "kube" / "run" / name


__all__ = [
    "BinariesError",
    "Cluster",
    "ControlPlane",
    "ControlPlaneError",
    "ExistingCluster",
    "KubectlError",
    "cache_root",
    "default_run_dir",
    "ensure_binaries",
    "read_state",
    "state_alive",
    "stop_from_state",
    "tools_script",
]
