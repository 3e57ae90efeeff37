"""``python -m rankswap_dev.localkube up|down|status|binaries`` - a detached local control plane.

``up`` prints ``export KUBECONFIG=...`` on stdout (everything else goes to stderr), so
``eval "$(python -m rankswap_dev.localkube up)"`` points the shell at it.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
from pathlib import Path

from . import (
    ControlPlane,
    ControlPlaneError,
    default_run_dir,
    ensure_binaries,
    read_state,
    state_alive,
    stop_from_state,
)
from ._binaries import BinariesError


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _up(args: argparse.Namespace) -> int:
    work_dir: Path = args.dir
    state = read_state(work_dir)
    if state is not None and state_alive(state):
        _say(f"already running: {state['server']} (work dir {work_dir})")
        print(f"export KUBECONFIG={state['kubeconfig']}")
        return 0
    if state is not None or work_dir.exists():
        stop_from_state(work_dir)
        shutil.rmtree(work_dir, ignore_errors=True)
    bin_dir = ensure_binaries()
    plane = ControlPlane(
        work_dir,
        bin_dir=bin_dir,
        start_timeout=args.timeout,
        detached=not args.foreground,
        kubeconfig_copy=args.kubeconfig,
    )
    try:
        plane.start()
    except ControlPlaneError as exc:
        _say(f"error: {exc}")
        return 1
    _say(f"kube-apiserver {plane.server} ready in {plane.startup_seconds:.1f} s")
    _say(f"logs: {plane.log_dir}")
    _say(
        f"kubeconfig: {plane.kubeconfig}"
        + (f" (copied to {args.kubeconfig})" if args.kubeconfig else "")
    )
    print(f"export KUBECONFIG={args.kubeconfig or plane.kubeconfig}", flush=True)
    if not args.foreground:
        _say("stop it with: python -m rankswap_dev.localkube down")
        return 0
    _say("running in the foreground; Ctrl-C stops it")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            if not plane.running:
                _say(f"a control plane process exited; see {plane.log_dir}")
                return 1
        return 0
    finally:
        plane.stop()
        _say("stopped")


def _down(args: argparse.Namespace) -> int:
    stopped = stop_from_state(args.dir)
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)
    _say("stopped" if stopped else "not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    state = read_state(args.dir)
    if state is not None and state_alive(state):
        _say(f"running: {state['server']}  kubeconfig: {state['kubeconfig']}")
        return 0
    _say("not running")
    return 1


def _binaries(args: argparse.Namespace) -> int:
    try:
        print(ensure_binaries("clients" if args.clients_only else "all"))
    except BinariesError as exc:
        _say(f"error: {exc}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rankswap_dev.localkube", description=__doc__)
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="work dir (default: $RANKSWAP_CACHE/kube/run/<--name>)",
    )
    parser.add_argument("--name", default="default", help="name of the control plane")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start etcd + kube-apiserver (detached unless --foreground)")
    up.add_argument("--timeout", type=float, default=90.0, help="readiness timeout, seconds")
    up.add_argument("--kubeconfig", type=Path, default=None, help="also write kubeconfig here")
    up.add_argument("--foreground", action="store_true", help="run until Ctrl-C")
    up.set_defaults(func=_up)
    down = sub.add_parser("down", help="stop it and delete its work dir")
    down.add_argument("--keep", action="store_true", help="keep the work dir (logs, etcd data)")
    down.set_defaults(func=_down)
    status = sub.add_parser("status", help="exit 0 if running")
    status.set_defaults(func=_status)
    binaries = sub.add_parser("binaries", help="build/unpack the binaries, print their dir")
    binaries.add_argument("--clients-only", action="store_true", help="kubectl + helm only")
    binaries.set_defaults(func=_binaries)
    args = parser.parse_args(argv)
    if args.dir is None:
        args.dir = default_run_dir(args.name)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
