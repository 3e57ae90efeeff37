"""The public app in-process (httpx.ASGITransport), with a real bundle and a real SQLite DB."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rankswap.productdb import ProductDB
from rankswap_ranker.app import create_app
from rankswap_ranker.bundle import Bundle
from rankswap_ranker.candidates import LazyProductDB
from rankswap_ranker.registry import BundleRegistry
from rankswap_ranker.settings import RankerSettings

pytestmark = pytest.mark.timeout(30)

BODY: dict[str, Any] = {
    "tenant_id": "acme",
    "context": {
        "employee_id": 1,
        "description": "taxi to client",
        "amount": 2480,
        "date": "2026-11-27",
    },
}


@pytest.fixture
def registry(loaded: Bundle) -> BundleRegistry[Bundle]:
    reg: BundleRegistry[Bundle] = BundleRegistry(1)
    reg.activate(loaded)
    return reg


@pytest.fixture
def client(
    settings: RankerSettings, registry: BundleRegistry[Bundle], db_url: str
) -> Iterator[httpx.Client]:
    app = create_app(settings, registry, LazyProductDB(db_url))
    with httpx.Client(transport=httpx.ASGITransport(app=app), base_url="http://ranker") as c:  # type: ignore[arg-type]
        yield c


async def _post(app: Any, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as c:
        return await c.post("/v1/rank", json=body)
