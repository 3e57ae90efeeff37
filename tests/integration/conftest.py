"""Fixtures for every integration test: the published test world, the CRD, the real API server.

The Kubernetes fixtures (``control_plane``, ``local_control_plane``, ``kube_api``,
``namespace``) come from the plugin ``rankswap_dev.localkube.testing``, registered once in
tests/conftest.py, so one control plane serves every integration test of the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.world import World, build_world, mirror_to_s3

from rankswap_dev.localkube import Cluster
from rankswap_dev.localkube.testing import prepare_kube_binaries

CRD = (
    Path(__file__).resolve().parents[2] / "manifests" / "crd" / "artifactversions.rankswap.io.yaml"
)


def pytest_collection_finish(session: pytest.Session) -> None:
    prepare_kube_binaries(session)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Product DB and two published dated bundles (plus a corrupt and a mismatched one)."""
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def world_s3(world: World, s3_root: str) -> Iterator[World]:
    """The same world, also mirrored to a fresh bucket on the moto S3 server."""
    yield mirror_to_s3(world, s3_root)


@pytest.fixture(scope="session")
def crd_installed(control_plane: Cluster) -> None:
    """The ArtifactVersion CRD from manifests/crd/ (the single source), Established."""
    control_plane.kubectl("apply", "--server-side", "-f", str(CRD))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/artifactversions.rankswap.io"
    )
