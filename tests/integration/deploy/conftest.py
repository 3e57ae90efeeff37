"""Fixtures of the deployables tests: paths, and the CRD applied once per session.

The control-plane fixtures (``control_plane``, ``local_control_plane``, ``namespace``, ``world``)
come from tests/integration/conftest.py; nothing here starts a cluster of its own.
"""

from __future__ import annotations

import pytest
from tests.integration.deploy.layout import CRD

from rankswap.localkube import Cluster


@pytest.fixture(scope="session")
def crd_applied(control_plane: Cluster) -> None:
    """The ArtifactVersion CRD from manifests/crd/, Established (what `helm install` finds)."""
    control_plane.kubectl("apply", "--server-side", "-f", str(CRD))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/artifactversions.rankswap.io"
    )
