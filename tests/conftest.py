"""Fixtures shared by every layer of tests: real services, started by the tests themselves."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rankswap.artifacts.store import reset_s3_client
from tests.support.services import PostgresServer, moto_server, postgres_server

# The real-API-server fixtures (control_plane, namespace, ...): one plugin, registered once.
pytest_plugins = ["rankswap_dev.localkube.testing"]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real moto S3 server process on loopback; AWS settings in the environment point at it."""
    with moto_server() as endpoint:
        saved = {k: os.environ.get(k) for k in _AWS_ENV}
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        reset_s3_client()
        try:
            yield endpoint
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            reset_s3_client()


_AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture
def s3_root(moto_endpoint: str) -> str:
    """A fresh bucket on the moto server, as an artifact root URI ``s3://bucket/prefix``."""
    import boto3

    bucket = f"rankswap-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/artifacts"


@pytest.fixture
def file_root(tmp_path: Path) -> str:
    """A fresh local folder as an artifact root URI ``file:///...``."""
    root = tmp_path / "store"
    root.mkdir()
    return root.as_uri()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway real PostgreSQL cluster on a free loopback port, for the whole session."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresServer) -> str:
    """SQLAlchemy URL of the session's PostgreSQL (database ``postgres``, trust auth)."""
    return postgres.url


@pytest.fixture(params=["file", "s3"])
def store_root(request: pytest.FixtureRequest) -> str:
    """Both artifact back ends: a file:// root and an s3:// root on a real moto server."""
    fixture = "file_root" if request.param == "file" else "s3_root"
    return str(request.getfixturevalue(fixture))
