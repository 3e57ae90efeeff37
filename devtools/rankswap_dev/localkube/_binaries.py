"""Locate (and on first use build) kube-apiserver, etcd, kubectl and helm."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

SERVER_BINARIES = ("kube-apiserver", "etcd")
CLIENT_BINARIES = ("kubectl", "helm")

Components = Literal["all", "clients"]


class BinariesError(RuntimeError):
    """The binaries could not be found, built or unpacked."""


def tools_script() -> Path:
    """Path of scripts/kube-tools.sh (override with ``RANKSWAP_KUBE_TOOLS_SCRIPT``)."""
    override = os.environ.get("RANKSWAP_KUBE_TOOLS_SCRIPT")
    if override:
        return Path(override)
    # devtools/rankswap_dev/localkube/_binaries.py -> repository root
    return Path(__file__).resolve().parents[3] / "scripts" / "kube-tools.sh"


def _complete(bin_dir: Path, names: tuple[str, ...]) -> bool:
    return all(os.access(bin_dir / n, os.X_OK) for n in names)


def ensure_binaries(components: Components = "all", *, quiet: bool = False) -> Path:
    """Return a directory holding the binaries, running scripts/kube-tools.sh if needed.

    ``RANKSWAP_KUBE_BIN_DIR`` names a ready directory and skips the script entirely.
    The script itself honours ``KUBEBUILDER_ASSETS`` (existing kube-apiserver + etcd), the
    version variables and ``RANKSWAP_CACHE``; see docs/CONTROL_PLANE.md. With
    ``components="clients"`` only kubectl and helm are provided (no Go build), which is all an
    existing cluster needs.
    """
    wanted = CLIENT_BINARIES if components == "clients" else SERVER_BINARIES + CLIENT_BINARIES
    ready = os.environ.get("RANKSWAP_KUBE_BIN_DIR")
    if ready:
        bin_dir = Path(ready)
        if not _complete(bin_dir, wanted):
            raise BinariesError(f"RANKSWAP_KUBE_BIN_DIR={ready} lacks one of {', '.join(wanted)}")
        return bin_dir
    script = tools_script()
    if not script.is_file():
        raise BinariesError(
            f"{script} not found; set RANKSWAP_KUBE_BIN_DIR to a directory with {', '.join(wanted)}"
        )
    env = dict(os.environ, KUBE_TOOLS_COMPONENTS=components, PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", str(script)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = f"\n{proc.stderr[-4000:]}" if quiet and proc.stderr else ""
        raise BinariesError(f"{script} failed with exit code {proc.returncode}{detail}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        raise BinariesError(f"{script} printed no bin dir")
    bin_dir = Path(lines[-1].strip())
    if not _complete(bin_dir, wanted):
        raise BinariesError(f"{bin_dir} (from {script}) lacks one of {', '.join(wanted)}")
    return bin_dir
