"""Tenant cohorts in the pod: the admin API takes them (as hostile input), the coordinator
validates both bundles, every worker routes the cohort's tenants to the cohort bundle, the
answer names the bundle that produced it, and the shadow compares only the cohort's requests."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from tests.unit.ranker.builders import AS_OF, Published, product_db, publish_bundle
from tests.unit.ranker.conftest import ITEMS
from tests.unit.ranker.test_ranker_admin_settings import _admin
from tests.unit.ranker.test_ranker_convergence import Pod

from rankswap.cohorts import CohortAssignment
from rankswap.podstate import WorkerCohort
from rankswap_ranker import bundle as bundles
from rankswap_ranker.app import RankFastPath, create_app
from rankswap_ranker.candidates import LazyProductDB
from rankswap_ranker.coordinator import CohortRequest
from rankswap_ranker.ranking import RankQuery, rank
from rankswap_ranker.registry import BundleRegistry
from rankswap_ranker.routes import HEADER_BUNDLE, HEADER_FEATURES, HEADER_MODEL
from rankswap_ranker.settings import RankerSettings
from rankswap_ranker.shadow import Shadow, ShadowMetrics

pytestmark = pytest.mark.timeout(60)

ACME = CohortAssignment(tenants=["acme"])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def newer(file_root: str, tmp_path: Path) -> Published:
    return publish_bundle(
        file_root,
        tmp_path / "src2",
        item_ids=range(1, ITEMS + 1),
        as_of=AS_OF + timedelta(days=1),
        weight=2.0,
    )


@pytest.fixture
def pod(tmp_path: Path, file_root: str, cache_dir: Path) -> Pod:
    return Pod(tmp_path / "run", [file_root], cache_dir)


def _push(
    pod: Pod, main: Published, cohort: Published | None, who: CohortAssignment = ACME
) -> None:
    req = pod.coordinator.request(
        main.model_uri,
        main.features_uri,
        "admin",
        cohort=CohortRequest(cohort.model_uri, cohort.features_uri, who) if cohort else None,
    )
    assert pod.coordinator.process_pending()
    for sync in pod.syncs:
        sync.poll_once()
    assert pod.coordinator.pod_state().desired is not None
    assert req.request_id


def test_every_worker_serves_the_cohort_bundle_to_the_cohort_only(
    pod: Pod, published: Published, newer: Published
) -> None:
    _push(pod, published, None)
    _push(pod, published, newer)
    state = pod.coordinator.pod_state()
    assert state.converged and state.last_error is None
    assert state.active is not None and state.active.bundle_id == published.bundle_id
    assert state.cohort is not None and state.cohort.bundle.bundle_id == newer.bundle_id
    assert state.cohort.assignment == ACME and state.cohort.fingerprint == ACME.fingerprint
    assert state.desired is not None and state.desired.cohort is not None
    assert state.desired.cohort.model_uri == newer.model_uri
    for reg, worker in zip(pod.registries, state.workers, strict=True):
        assert reg.for_tenant("acme").bundle_id == newer.bundle_id
        assert reg.for_tenant("other").bundle_id == published.bundle_id
        assert worker.cohort == WorkerCohort(
            bundle_id=newer.bundle_id, fingerprint=ACME.fingerprint
        )

    wider = CohortAssignment(tenants=["acme"], percent=50)
    _push(pod, published, newer, wider)
    state = pod.coordinator.pod_state()
    assert state.converged and state.cohort is not None
    assert state.cohort.fingerprint == wider.fingerprint, "a new step is a new desired seq"

    # 100 %: the cohort bundle serves everyone; the previous one stays warm (rollback target).
    _push(pod, newer, None)
    state = pod.coordinator.pod_state()
    assert state.converged and state.cohort is None
    assert [r.active.bundle_id if r.active else None for r in pod.registries] == [
        newer.bundle_id
    ] * 2
    assert all(r.warm_ids() == [published.bundle_id] for r in pod.registries)
    assert all(r.cohort is None for r in pod.registries)


def test_a_rollback_drops_the_cohort_and_keeps_its_bundle_warm(
    pod: Pod, published: Published, newer: Published
) -> None:
    _push(pod, published, None)
    _push(pod, published, newer)
    _push(pod, published, None)
    state = pod.coordinator.pod_state()
    assert state.converged and state.cohort is None
    for reg in pod.registries:
        assert reg.cohort is None and reg.for_tenant("acme").bundle_id == published.bundle_id
        assert reg.warm_ids() == [newer.bundle_id], "a re-promotion is a pointer swap"


def test_the_cohort_bundle_must_differ_and_lie_in_the_allowed_roots(
    pod: Pod, published: Published, tmp_path: Path
) -> None:
    from rankswap_ranker.errors import URINotAllowed

    _push(pod, published, None)
    _push(pod, published, published)
    state = pod.coordinator.pod_state()
    assert state.desired is not None and state.desired.status == "failed"
    assert state.last_error is not None and "is the pod's bundle itself" in state.last_error.message
    assert state.cohort is None and state.converged, "a refused push changes nothing that serves"
    outside = f"file://{tmp_path}/elsewhere/models/m/2026-11-26"
    with pytest.raises(URINotAllowed, match="model_uri"):
        pod.coordinator.request(
            published.model_uri,
            published.features_uri,
            "admin",
            cohort=CohortRequest(outside, published.features_uri, ACME),
        )


def test_a_restarted_supervisor_resumes_the_cohort(
    pod: Pod,
    published: Published,
    newer: Published,
    tmp_path: Path,
    file_root: str,
    cache_dir: Path,
) -> None:
    _push(pod, published, None)
    _push(pod, published, newer)
    again = Pod(tmp_path / "run", [file_root], cache_dir)
    assert again.coordinator.target_cohort is not None
    assert again.coordinator.target_cohort[1] == ACME
    assert again.coordinator.requested is not None and again.coordinator.requested.cohort


@pytest.fixture
def two_tenants(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'two.db'}"
    product_db(url, {"acme": ITEMS, "beta": ITEMS}).close()
    yield url


def _loaded(p: Published, cache: Path) -> bundles.Bundle:
    return bundles.load(bundles.resolve(p.model_uri, p.features_uri, cache))


BODY: dict[str, Any] = {
    "context": {"employee_id": 1, "description": "taxi", "amount": 1.0, "date": "2026-11-27"}
}


@pytest.mark.anyio
async def test_each_answer_names_the_bundle_that_produced_it(
    published: Published,
    newer: Published,
    cache_dir: Path,
    two_tenants: str,
    settings: RankerSettings,
) -> None:
    old, new = _loaded(published, cache_dir), _loaded(newer, cache_dir)
    reg: BundleRegistry[bundles.Bundle] = BundleRegistry(1)
    reg.activate(old)
    reg.set_cohort(new, ACME)
    fast = create_app(settings, reg, LazyProductDB(two_tenants))
    # Both ways in: the fast path, and the FastAPI route (the app without the fast path).
    plain = create_app(settings, reg, LazyProductDB(two_tenants))
    plain.user_middleware = [m for m in plain.user_middleware if m.cls is not RankFastPath]  # type: ignore[comparison-overlap]
    for app in (fast, plain):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ranker") as c:
            for tenant, want in (("acme", new), ("beta", old)):
                r = await c.post("/v1/rank", json={**BODY, "tenant_id": tenant})
                assert r.status_code == 200, r.text
                assert r.headers[HEADER_BUNDLE] == want.bundle_id
                assert r.headers[HEADER_MODEL] == want.ref.model.version
                assert r.headers[HEADER_FEATURES] == want.ref.features.version
                assert r.json()["bundle_id"] == want.bundle_id
                assert r.json()["model_version"] == want.ref.model.version


def test_the_shadow_compares_only_the_cohorts_requests(
    published: Published, newer: Published, cache_dir: Path, two_tenants: str
) -> None:
    old, new = _loaded(published, cache_dir), _loaded(newer, cache_dir)
    reg: BundleRegistry[bundles.Bundle] = BundleRegistry(1)
    reg.activate(old)
    reg.set_cohort(new, ACME)
    shadow = Shadow(
        reg,
        ShadowMetrics(CollectorRegistry()),
        sample_rate=1.0,
        queue_size=64,
        rng=random.Random(1),
    )
    source = LazyProductDB(two_tenants)
    for i in range(6):
        tenant = "acme" if i % 2 else "beta"
        query = RankQuery(tenant, 1, None, "taxi", 100.0 + i, date(2026, 11, 27), 5)
        shadow.offer(rank(reg.for_tenant(tenant), source, query))
    assert shadow.drain() == 3
    (c,) = shadow.comparisons()
    assert (c.active, c.reference, c.cohort) == (new.bundle_id, old.bundle_id, ACME.fingerprint)
    assert (c.offered, c.compared) == (3, 3)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("cohort", "where"),
    [
        ({"tenants": ["bad id"]}, "tenants"),
        ({"tenants": ["-x"]}, "tenants"),
        ({"tenants": ["t" * 129]}, "tenants"),
        ({"tenants": [f"t{i}" for i in range(201)]}, "tenants"),
        ({"percent": 101}, "percent"),
        ({"percent": "10"}, "percent"),
        ({"percent": 0}, "cohort"),
        ({"tenants": []}, "cohort"),
        ({"tenants": ["a"], "extra": 1}, "extra"),
        ({"tenants": ["a"], "model_uri": ""}, "model_uri"),
    ],
    ids=[
        "space",
        "leading-punctuation",
        "too-long",
        "too-many",
        "percent-over",
        "percent-string",
        "empty-percent",
        "empty-list",
        "unknown-field",
        "empty-uri",
    ],
)
async def test_the_admin_api_refuses_a_bad_cohort_with_the_field_named(
    settings: RankerSettings,
    cache_dir: Path,
    published: Published,
    cohort: dict[str, Any],
    where: str,
) -> None:
    auth = {"Authorization": "Bearer s3cret"}
    uris = {"model_uri": published.model_uri, "features_uri": published.features_uri}
    body = {**uris, "cohort": {**uris, **cohort}}
    async with _admin(settings, cache_dir) as c:
        r = await c.put("/admin/v1/bundle", json=body, headers=auth)
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "invalid_request"
        assert where in r.text
        state = (await c.get("/admin/v1/state", headers=auth)).json()
        assert state["desired"] is None, "nothing was asked for"
        ok = await c.put(
            "/admin/v1/bundle", json={**uris, "cohort": {**uris, "percent": 5}}, headers=auth
        )
        assert ok.status_code == 202, ok.text
        state = (await c.get("/admin/v1/state", headers=auth)).json()
        assert state["desired"]["cohort"]["assignment"] == {"tenants": [], "percent": 5}
