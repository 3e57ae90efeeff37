"""pytest fixtures over a real API server: import them into a conftest.py.

    from rankswap_dev.localkube.testing import (  # noqa: F401
        control_plane, kube_api, local_control_plane, namespace, prepare_kube_binaries,
    )

    def pytest_collection_finish(session):
        prepare_kube_binaries(session)

* ``control_plane`` (session): a :class:`~rankswap_dev.localkube.Cluster`. By default a local
  :class:`~rankswap_dev.localkube.ControlPlane` (etcd + kube-apiserver) started once per session
  in pytest's temporary directory (logs kept there on failure). With
  ``RANKSWAP_TEST_KUBECONFIG=/path/to/kubeconfig`` (explicit mode) an existing cluster is used
  instead and nothing is started. ``KUBECONFIG`` alone is deliberately ignored, so that a shell
  pointed at a real cluster never runs the tests there by accident.
* ``local_control_plane`` (session): the same object, but the test skips in explicit mode: use
  it for tests that fake pods by patching pod status, or that need certificate identities.
* ``kube_api`` (session): a ``kubernetes.client.ApiClient`` with admin rights.
* ``namespace`` (function): a fresh namespace ``rs-test-xxxxxx``, deleted afterwards (without
  kube-controller-manager a deleted namespace stays Terminating; names never repeat).

Define each session fixture in one conftest only (a second import elsewhere would start a second
control plane); a conftest at ``tests/integration/`` serves every integration test below it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._binaries import BinariesError, ensure_binaries
from ._cluster import Cluster, ExistingCluster
from ._controlplane import ControlPlane

EXPLICIT_KUBECONFIG_ENV = "RANKSWAP_TEST_KUBECONFIG"

_FIXTURES_NEEDING_SERVER = {"control_plane", "local_control_plane", "kube_api", "namespace"}


def explicit_kubeconfig() -> Path | None:
    """The kubeconfig of an existing cluster given explicitly, or None (local control plane)."""
    value = os.environ.get(EXPLICIT_KUBECONFIG_ENV, "").strip()
    return Path(value).expanduser() if value else None


def prepare_kube_binaries(session: pytest.Session) -> None:
    """Build/unpack the binaries before the first test runs, so that a cold build (minutes)
    is not charged to a test's timeout. Call from ``pytest_collection_finish``."""
    if session.config.option.collectonly:
        return
    if not any(
        _FIXTURES_NEEDING_SERVER & set(getattr(i, "fixturenames", ())) for i in session.items
    ):
        return
    try:
        ensure_binaries("clients" if explicit_kubeconfig() else "all")
    except BinariesError as exc:
        # Leave the failure to the fixtures, which report it on every test that needs them.
        session.config.stash[_BINARIES_ERROR] = str(exc)


_BINARIES_ERROR = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def control_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """The cluster under test: a local control plane, or the explicit existing cluster."""
    error = request.config.stash.get(_BINARIES_ERROR, None)
    if error is not None:
        pytest.fail(f"kube binaries unavailable: {error}", pytrace=False)
    kubeconfig = explicit_kubeconfig()
    if kubeconfig is not None:
        yield ExistingCluster(
            kubeconfig,
            bin_dir=ensure_binaries("clients", quiet=True),
            work_dir=tmp_path_factory.mktemp("kube-existing"),
        )
        return
    plane = ControlPlane(
        tmp_path_factory.mktemp("kube"),
        bin_dir=ensure_binaries(quiet=True),
        start_timeout=float(os.environ.get("RANKSWAP_KUBE_START_TIMEOUT", "90")),
    )
    with plane:
        yield plane


@pytest.fixture(scope="session")
def local_control_plane(control_plane: Cluster) -> ControlPlane:
    """The local control plane; skips when the tests run against an existing cluster."""
    if not isinstance(control_plane, ControlPlane):
        pytest.skip(f"fakes pods / uses local certificates: not run against {control_plane!r}")
    return control_plane


@pytest.fixture(scope="session")
def kube_api(control_plane: Cluster) -> Iterator[Any]:
    """An admin ``kubernetes.client.ApiClient`` for the cluster under test."""
    client = control_plane.api_client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def namespace(control_plane: Cluster) -> Iterator[str]:
    """A fresh namespace for one test; deleted (asynchronously) afterwards."""
    name = f"rs-test-{secrets.token_hex(3)}"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
