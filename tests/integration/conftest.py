"""Fixtures for every integration test: the published test world, and the real API server.

The session-scoped Kubernetes fixtures are imported once, here, so one control plane serves
every integration test of the session (see rankswap.localkube.testing).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.world import World, build_world, mirror_to_s3

from rankswap.localkube.testing import (  # noqa: F401 - fixtures
    control_plane,
    kube_api,
    local_control_plane,
    namespace,
    prepare_kube_binaries,
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
