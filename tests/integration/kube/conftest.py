"""Fixtures for tests against a real Kubernetes API server (see docs/CONTROL_PLANE.md).

The fixtures live in rankswap.localkube.testing so that other test folders can reuse them;
they are defined here for tests/integration/kube only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rankswap.localkube.testing import (
    control_plane,
    kube_api,
    local_control_plane,
    namespace,
    prepare_kube_binaries,
)

__all__ = ["control_plane", "kube_api", "local_control_plane", "namespace"]

DATA = Path(__file__).parent / "data"


def pytest_collection_finish(session: pytest.Session) -> None:
    prepare_kube_binaries(session)
