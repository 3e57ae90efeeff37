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


# The session's world (datagen, two feature builds, two trainings) takes ~1.5 min on an idle
# machine and ~4.5 min on a loaded one; the first test that uses it pays for it.
WORLD_BUILD_BUDGET_S = 600.0


def pytest_collection_finish(session: pytest.Session) -> None:
    prepare_kube_binaries(session)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give the first integration test that uses ``world`` its own timeout plus the world's build
    budget, so a loaded machine does not fail whichever test happens to build it."""
    here = Path(__file__).parent
    first = next(
        (
            i
            for i in items
            if "world" in getattr(i, "fixturenames", ()) and here in Path(i.path).parents
        ),
        None,
    )
    if first is None:
        return
    marker = first.get_closest_marker("timeout")
    base = float(marker.args[0]) if marker and marker.args else float(config.getini("timeout"))
    first.add_marker(pytest.mark.timeout(base + WORLD_BUILD_BUDGET_S), append=False)


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
