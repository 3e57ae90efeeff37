"""Shadow comparison in one worker: real bundles, a real product DB, the real rank path."""

from __future__ import annotations

import os
import random
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from tests.unit.ranker.builders import AS_OF, publish_bundle
from tests.unit.ranker.conftest import ITEMS

from rankswap_ranker import bundle as bundles
from rankswap_ranker.app import create_app
from rankswap_ranker.candidates import LazyProductDB
from rankswap_ranker.convergence import RunDir
from rankswap_ranker.ranking import RankOutcome, RankQuery, rank
from rankswap_ranker.registry import BundleRegistry
from rankswap_ranker.settings import RankerSettings
from rankswap_ranker.shadow import Shadow, ShadowMetrics, read_pod_comparisons, shadow_path

pytestmark = pytest.mark.timeout(60)

Trio = tuple[bundles.Bundle, bundles.Bundle, bundles.Bundle]


def _bundle(root: str, work: Path, cache: Path, *, weight: float, day: int) -> bundles.Bundle:
    pub = publish_bundle(
        root, work, item_ids=range(1, ITEMS + 1), as_of=AS_OF + timedelta(days=day), weight=weight
    )
    return bundles.load(bundles.resolve(pub.model_uri, pub.features_uri, cache))


def _registry(*serving: bundles.Bundle) -> BundleRegistry[bundles.Bundle]:
    reg: BundleRegistry[bundles.Bundle] = BundleRegistry(1)
    for b in serving:
        reg.activate(b)
    return reg


def _queries(n: int) -> list[RankQuery]:
    return [RankQuery("acme", 1, None, "taxi", 100.0 + i, date(2026, 11, 27), 5) for i in range(n)]


def _served(reg: BundleRegistry[bundles.Bundle], db_url: str, n: int) -> list[RankOutcome]:
    source = LazyProductDB(db_url)
    return [rank(reg.current(), source, q) for q in _queries(n)]


@pytest.fixture
def pair(file_root: str, tmp_path: Path) -> Trio:
    """An old bundle, a new one that ranks the same way, and a bad one that ranks backwards."""
    cache = tmp_path / "cache"
    old = _bundle(file_root, tmp_path / "a", cache, weight=1.0, day=0)
    same = _bundle(file_root, tmp_path / "b", cache, weight=2.0, day=1)
    bad = _bundle(file_root, tmp_path / "c", cache, weight=-1.0, day=2)
    return old, same, bad


def test_a_bundle_that_ranks_like_the_old_one_agrees(pair: Trio, db_url: str) -> None:
    old, same, _ = pair
    reg = _registry(old, same)
    shadow = Shadow(reg, ShadowMetrics(CollectorRegistry()), sample_rate=1.0, queue_size=64)
    for outcome in _served(reg, db_url, 20):
        shadow.offer(outcome)
    assert shadow.drain() == 20
    (c,) = shadow.comparisons()
    assert (c.active, c.reference) == (same.bundle_id, old.bundle_id)
    assert (c.offered, c.sampled, c.compared, c.dropped) == (20, 20, 20, 0)
    assert c.top1_agreement == 1.0 and c.topk_overlap == 1.0 and c.rank_correlation == 1.0
    # Doubled scores are the same ranking on another scale: the PSI of standardised scores
    # does not call that a shift (the raw-score PSI did: a good retrain looked shifted).
    assert c.psi is not None and c.psi < 0.1, c.psi
    assert c.p99_ratio is not None and c.active_error_rate == 0.0


def test_a_bundle_that_ranks_backwards_disagrees(pair: Trio, db_url: str) -> None:
    old, _, bad = pair
    reg = _registry(old, bad)
    shadow = Shadow(reg, ShadowMetrics(CollectorRegistry()), sample_rate=1.0, queue_size=64)
    for outcome in _served(reg, db_url, 10):
        shadow.offer(outcome)
    shadow.drain()
    (c,) = shadow.comparisons()
    assert c.compared == 10
    assert c.top1_agreement == 0.0 and c.topk_overlap == 0.0
    # Reversed scores mirror each request's standardised distribution: the PSI sees a shape
    # (close to symmetric here), the ranking measures above are what catch a reversal.
    assert c.psi is not None and c.psi < 0.25


def test_sampling_counts_every_request_and_compares_a_share(pair: Trio, db_url: str) -> None:
    old, same, _ = pair
    reg = _registry(old, same)
    shadow = Shadow(
        reg,
        ShadowMetrics(CollectorRegistry()),
        sample_rate=0.25,
        queue_size=1000,
        rng=random.Random(1),
    )
    outcomes = _served(reg, db_url, 10)
    for _ in range(20):
        for o in outcomes:
            shadow.offer(o)
    shadow.drain()
    (c,) = shadow.comparisons()
    assert c.offered == 200
    assert c.compared == c.sampled and 30 <= c.sampled <= 70


def test_a_full_queue_drops_and_counts_instead_of_waiting(pair: Trio, db_url: str) -> None:
    old, same, _ = pair
    reg = _registry(old, same)
    metrics = ShadowMetrics(CollectorRegistry())
    shadow = Shadow(reg, metrics, sample_rate=1.0, queue_size=2)
    for o in _served(reg, db_url, 5):
        shadow.offer(o)  # nothing consumes: the third and later are dropped
    (c,) = shadow.comparisons()
    assert (c.sampled, c.dropped) == (5, 3)
    assert shadow.drain() == 2


def test_no_warm_bundle_or_rate_zero_does_nothing(pair: Trio, db_url: str) -> None:
    old, same, _ = pair
    alone = _registry(old)
    shadow = Shadow(alone, ShadowMetrics(CollectorRegistry()), sample_rate=1.0, queue_size=4)
    for o in _served(alone, db_url, 3):
        shadow.offer(o)
    assert shadow.comparisons() == []
    reg = _registry(old, same)
    off = Shadow(reg, ShadowMetrics(CollectorRegistry()), sample_rate=0.0, queue_size=4)
    for o in _served(reg, db_url, 3):
        off.offer(o)
    assert off.comparisons() == []


def test_a_new_activation_starts_the_pair_afresh(pair: Trio, db_url: str) -> None:
    old, same, _ = pair
    reg = _registry(old, same)
    shadow = Shadow(reg, ShadowMetrics(CollectorRegistry()), sample_rate=1.0, queue_size=64)
    for o in _served(reg, db_url, 4):
        shadow.offer(o)
    shadow.drain()
    reg.activate_warm(old.bundle_id)  # rolled back: old serves, same is warm
    for o in _served(reg, db_url, 2):
        shadow.offer(o)
    reg.activate_warm(same.bundle_id)  # promoted again: counting starts over
    for o in _served(reg, db_url, 3):
        shadow.offer(o)
    shadow.drain()
    by_pair = {(c.active, c.reference): c for c in shadow.comparisons()}
    assert by_pair[(same.bundle_id, old.bundle_id)].offered == 3
    assert by_pair[(old.bundle_id, same.bundle_id)].offered == 2


def test_workers_files_are_summed_for_the_pod(pair: Trio, db_url: str, tmp_path: Path) -> None:
    old, same, _ = pair
    run_dir = RunDir(tmp_path / "run")
    for slot in (0, 1):
        reg = _registry(old, same)
        shadow = Shadow(
            reg,
            ShadowMetrics(CollectorRegistry()),
            sample_rate=1.0,
            queue_size=64,
            state_path=shadow_path(run_dir, slot),
            pid=os.getpid(),
        )
        for o in _served(reg, db_url, 3 + slot):
            shadow.offer(o)
        shadow.drain()
        shadow.write()
    dead = shadow_path(run_dir, 2)
    dead.write_text(
        shadow_path(run_dir, 0).read_text().replace(f'"pid": {os.getpid()}', '"pid": 999999999')
    )
    (c,) = read_pod_comparisons(run_dir, 3)
    assert c.compared == 7, "both live workers, not the dead one"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_rank_route_offers_after_answering(
    pair: Trio, db_url: str, tmp_path: Path, file_root: str
) -> None:
    old, same, _ = pair
    reg = _registry(old, same)
    prom = CollectorRegistry()
    shadow = Shadow(reg, ShadowMetrics(prom), sample_rate=1.0, queue_size=64)
    settings = RankerSettings(allowed_roots=[file_root], run_dir=tmp_path / "run", workers=1)
    app = create_app(settings, reg, LazyProductDB(db_url), shadow=shadow)
    body = {
        "tenant_id": "acme",
        "context": {"employee_id": 1, "description": "taxi", "amount": 1.0, "date": "2026-11-27"},
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        for _ in range(3):
            r = await http.post("/v1/rank", json=body)
            assert r.status_code == 200
            assert r.headers["X-Rankswap-Bundle"] == same.bundle_id
    shadow.drain()
    (c,) = shadow.comparisons()
    assert c.compared == 3 and c.top1_agreement == 1.0
    text = generate_latest(prom).decode()
    pair_labels = f'active="{same.bundle_id}",reference="{old.bundle_id}"'
    assert f'rankswap_ranker_shadow_requests_total{{{pair_labels},result="compared"}} 3.0' in text
    assert f"rankswap_ranker_shadow_top1_agreements_total{{{pair_labels}}} 3.0" in text
