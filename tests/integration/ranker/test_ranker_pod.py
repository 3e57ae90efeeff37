"""A real ranker pod (supervisor + 2 uvicorn workers) on loopback, driven through its two ports.

Artifacts on a file:// root and on S3 (a real moto server); the product DB in SQLite here and
PostgreSQL in test_ranker_postgres.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from tests.integration.ranker.conftest import TOKEN, WORKERS, RankerPod
from tests.unit.ranker.builders import (
    onnx_model,
    product_db,
    publish_bundle,
    publish_model,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BODY: dict[str, Any] = {
    "tenant_id": "acme",
    "context": {"employee_id": 1, "description": "taxi", "amount": 1200, "date": "2026-11-27"},
}


class Store:
    def __init__(self, root: str, s3_root: str, work: Path) -> None:
        self.root = root
        self.s3_root = s3_root
        self.work = work
        ids = range(1, 301)
        self.a = publish_bundle(root, work / "a", item_ids=ids, as_of=date(2026, 11, 20), weight=1)
        self.b = publish_bundle(root, work / "b", item_ids=ids, as_of=date(2026, 11, 21), weight=-1)
        self.s3 = publish_bundle(
            s3_root, work / "s", item_ids=ids, as_of=date(2026, 11, 22), weight=2
        )

    def model_uri(self, when: date) -> str:
        return self.a.model_uri.replace("2026-11-20", when.isoformat())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str) -> Store:
    work = tmp_path_factory.mktemp("store")
    root = work / "root"
    root.mkdir()
    bucket = f"ranker-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    return Store(root.as_uri(), f"s3://{bucket}/artifacts", work)


@pytest.fixture(scope="module")
def pod(
    store: Store,
    start_ranker: Callable[..., RankerPod],
    tmp_path_factory: pytest.TempPathFactory,
) -> RankerPod:
    db_path = tmp_path_factory.mktemp("db") / "product.db"
    product_db(f"sqlite:///{db_path}", {"acme": 300, "empty": 0}).close()
    return start_ranker(
        database_url=f"sqlite:///{db_path}",
        allowed_roots=f"{store.root},{store.s3_root}",
        refresh_interval_s="0.5",
    )


def _ranked(pod: RankerPod, n: int = 24) -> set[tuple[str, str]]:
    """(worker, bundle) pairs seen over ``n`` fresh connections."""
    seen = set()
    for _ in range(n):
        r = pod.rank(BODY)
        assert r.status_code == 200, r.text
        assert r.json()["bundle_id"] == r.headers["x-rankswap-bundle"]
        seen.add((r.headers["x-rankswap-worker"], r.headers["x-rankswap-bundle"]))
    return seen


def test_01_not_ready_and_503_before_the_first_bundle(pod: RankerPod) -> None:
    assert httpx.get(f"{pod.public_url}/readyz").status_code == 503
    r = pod.rank(BODY)
    assert r.status_code == 503
    assert r.json()["error"] == "no_active_bundle"
    assert httpx.get(f"{pod.public_url}/healthz").status_code == 200


def test_02_admin_needs_the_bearer_token(pod: RankerPod, store: Store) -> None:
    url = f"{pod.admin_url}/admin/v1/state"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    body = {"model_uri": store.a.model_uri, "features_uri": store.a.features_uri}
    r = httpx.put(f"{pod.admin_url}/admin/v1/bundle", json=body)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(url, headers=pod.auth).status_code == 200
    # The admin API is not on the public port.
    assert httpx.get(f"{pod.public_url}/admin/v1/state", headers=pod.auth).status_code == 404


def test_03_push_converges_every_worker(pod: RankerPod, store: Store) -> None:
    state = pod.push_and_settle(store.a.model_uri, store.a.features_uri)
    assert state["desired"]["status"] == "loaded", state
    assert state["converged"] and state["ready"]
    assert state["active"]["bundle_id"] == store.a.bundle_id
    assert len(state["workers"]) == WORKERS
    assert {w["active"]["bundle_id"] for w in state["workers"]} == {store.a.bundle_id}
    assert httpx.get(f"{pod.public_url}/readyz").status_code == 200
    seen = _ranked(pod)
    assert {b for _, b in seen} == {store.a.bundle_id}
    r = pod.rank(BODY)
    assert r.headers["x-rankswap-model-version"] == store.a.model.version
    assert [i["id"] for i in r.json()["items"]] == [300, 299, 298, 297, 296]


def test_04_swap_and_immediate_rollback_from_warm(pod: RankerPod, store: Store) -> None:
    state = pod.push_and_settle(store.b.model_uri, store.b.features_uri)
    assert state["active"]["bundle_id"] == store.b.bundle_id
    assert [w["bundle_id"] for w in state["warm"]] == [store.a.bundle_id]
    assert {b for _, b in _ranked(pod)} == {store.b.bundle_id}
    assert pod.rank(BODY).json()["items"][0]["id"] == 1  # weight -1: order reversed
    state = pod.push_and_settle(store.a.model_uri, store.a.features_uri)
    assert state["active"]["bundle_id"] == store.a.bundle_id
    assert all(w["last_load"]["how"] == "warm" for w in state["workers"])
    metrics = httpx.get(f"{pod.public_url}/metrics").text
    assert f"rankswap_ranker_bundle_rollbacks_total {float(WORKERS)}" in metrics
    assert f'bundle_id="{store.a.bundle_id}"' in metrics


def test_04b_requests_during_swaps_all_succeed_with_one_bundle_each(
    pod: RankerPod, store: Store
) -> None:
    import threading

    answers: list[httpx.Response] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                answers.append(client.post(f"{pod.public_url}/v1/rank", json=BODY))

    thread = threading.Thread(target=load)
    thread.start()
    try:
        for bundle in (store.b, store.a, store.b, store.a):
            pod.push_and_settle(bundle.model_uri, bundle.features_uri)
    finally:
        stop.set()
        thread.join(30)
    assert answers and all(r.status_code == 200 for r in answers)
    seen = set()
    for r in answers:
        doc = r.json()
        assert doc["bundle_id"] == r.headers["x-rankswap-bundle"]
        assert doc["model_version"] == r.headers["x-rankswap-model-version"]
        seen.add(doc["bundle_id"])
    assert seen <= {store.a.bundle_id, store.b.bundle_id}


@pytest.mark.parametrize(
    "case", ["corrupt-model", "checksum", "schema", "missing-path", "wrong-width"]
)
def test_05_bad_bundles_are_refused_and_the_active_one_keeps_serving(
    pod: RankerPod, store: Store, case: str
) -> None:
    before = pod.state()["active"]["bundle_id"]
    work = store.work / f"bad-{case}"
    when = {
        "corrupt-model": date(2026, 10, 1),
        "checksum": date(2026, 10, 2),
        "schema": date(2026, 10, 3),
        "missing-path": date(2026, 10, 4),
        "wrong-width": date(2026, 10, 5),
    }[case]
    model_uri = store.model_uri(when)
    features_uri = store.a.features_uri
    expect = {
        "corrupt-model": "ModelInvalid",
        "checksum": "ChecksumMismatch",
        "schema": "SchemaMismatch",
        "missing-path": "ManifestMissing",
        "wrong-width": "BundleIncompatible",
    }[case]
    if case == "corrupt-model":
        publish_model(store.root, work, b"this is not an onnx file", as_of=when)
    elif case == "checksum":
        publish_model(store.root, work, onnx_model(weight=5), as_of=when)
        path = Path(model_uri.removeprefix("file://")) / "model.onnx"
        path.write_bytes(onnx_model(weight=6))
    elif case == "schema":
        publish_model(store.root, work, onnx_model(), as_of=when, requires="2.0.0")
    elif case == "wrong-width":
        publish_model(store.root, work, onnx_model(num_width=3), as_of=when)
    state = pod.push_and_settle(model_uri, features_uri)
    assert state["desired"]["status"] == "failed", state
    assert state["last_error"]["type"] == expect, state["last_error"]
    assert state["last_error"]["model_uri"] == model_uri
    if case == "checksum":
        assert state["last_error"]["file"] == "model.onnx"
    assert state["active"]["bundle_id"] == before
    assert {b for _, b in _ranked(pod, 6)} == {before}
    metrics = httpx.get(f"{pod.public_url}/metrics").text
    assert "rankswap_ranker_bundle_load_failures_total{" in metrics


def test_06_uris_outside_the_allowed_roots_are_400(
    pod: RankerPod, store: Store, tmp_path: Path
) -> None:
    outside = (tmp_path / "models" / "ranker" / "2026-11-20").as_uri()
    r = pod.push(outside, store.a.features_uri)
    assert r.status_code == 400
    assert r.json()["error"] == "uri_not_allowed"
    r = pod.push("s3://someone-else/models/ranker/latest", store.a.features_uri)
    assert r.status_code == 400
    r = pod.push("ftp://x/models/ranker/latest", store.a.features_uri)
    assert r.status_code == 400
    r = pod.push(store.a.model_uri, "")
    assert r.status_code == 422
    assert "features_uri" in r.json()["message"]


def test_07_bundle_from_s3(pod: RankerPod, store: Store) -> None:
    state = pod.push_and_settle(store.s3.model_uri, store.s3.features_uri)
    assert state["desired"]["status"] == "loaded", state
    assert state["active"]["bundle_id"] == store.s3.bundle_id
    assert {b for _, b in _ranked(pod, 8)} == {store.s3.bundle_id}


def test_08_refresher_follows_latest(pod: RankerPod, store: Store) -> None:
    s3 = store.s3
    state = pod.push_and_settle(s3.latest_model_uri, s3.latest_features_uri)
    assert state["active"]["bundle_id"] == s3.bundle_id
    newer = publish_bundle(
        store.s3_root,
        store.work / "s-new",
        item_ids=range(1, 301),
        as_of=date(2026, 11, 29),
        weight=3,
    )
    pod.wait(
        lambda: pod.state()["converged"] and pod.state()["active"]["bundle_id"] == newer.bundle_id,
        60,
        "refresher picked up latest/",
    )
    state = pod.state()
    assert state["desired"]["model_uri"] == s3.latest_model_uri
    assert state["desired"]["status"] == "loaded"
    assert state["refresher"]["following"] == [s3.latest_model_uri, s3.latest_features_uri]


def test_09_malformed_rank_requests(pod: RankerPod) -> None:
    for body, field in [
        ({"context": BODY["context"]}, "tenant_id"),
        ({**BODY, "top_k": 1000}, "top_k"),
        ({**BODY, "context": {**BODY["context"], "date": "yesterday"}}, "context.date"),
    ]:
        r = pod.rank(body)
        assert r.status_code == 422, r.text
        assert r.json()["message"].startswith(field), r.text
    r = pod.rank({**BODY, "tenant_id": "nobody"})
    assert r.status_code == 404
    r = pod.rank({**BODY, "tenant_id": "empty"})
    assert r.status_code == 200 and r.json()["items"] == []


def test_10_a_dead_worker_is_replaced_and_converges(pod: RankerPod) -> None:
    import os
    import signal

    state = pod.state()
    victim = state["workers"][1]["pid"]
    os.kill(victim, signal.SIGKILL)
    pod.wait(
        lambda: (s := pod.state())["workers"][1]["pid"] != victim and s["converged"],
        90,
        "worker 1 replaced",
    )
    assert httpx.get(f"{pod.public_url}/readyz").status_code == 200
    text = httpx.get(f"{pod.public_url}/metrics").text
    active_lines = [x for x in text.splitlines() if x.startswith("rankswap_ranker_active_bundle{")]
    assert any(x.endswith(f" {float(WORKERS)}") for x in active_lines), active_lines


def test_11_the_pod_stays_ready_and_serving_while_a_worker_restarts(pod: RankerPod) -> None:
    """Readiness is "at least one worker serves the pod's bundle"; `converged` stays strict."""
    import os
    import signal

    victim = pod.state()["workers"][0]["pid"]
    os.kill(victim, signal.SIGKILL)
    window = []  # states seen while the replacement was not serving yet

    def replaced() -> bool:
        ready = httpx.get(f"{pod.public_url}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        r = pod.rank(BODY)
        assert r.status_code == 200, r.text
        s = pod.state()
        assert s["ready"], s
        if not s["converged"]:
            window.append(s)
        return bool(s["workers"][0]["pid"] != victim and s["converged"])

    pod.wait(replaced, 90, "worker 0 replaced")
    assert window, "the replacement was never seen restarting"
    assert any(not w["workers"][0].get("active") or not w["workers"][0]["alive"] for w in window)
    restarts = [
        x for x in httpx.get(f"{pod.public_url}/metrics").text.splitlines()
        if x.startswith("rankswap_ranker_worker_restarts_total ")
    ]  # fmt: skip
    assert restarts and float(restarts[0].split()[1]) >= 1, restarts


def test_12_a_replaced_or_removed_sqlite_file_is_followed_by_every_worker(
    store: Store,
    start_ranker: Callable[..., RankerPod],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A restore from backup (`mv` of a new file) is served at once by every worker; a missing
    file answers 503 database_unavailable and the pod recovers when it is back."""
    import os
    import signal

    work = tmp_path_factory.mktemp("db-replace")
    db_path = work / "product.db"
    product_db(f"sqlite:///{db_path}", {"acme": 300}).close()
    own = start_ranker(
        database_url=f"sqlite:///{db_path}",
        allowed_roots=store.root,
        model_uri=store.a.model_uri,
        features_uri=store.a.features_uri,
    )
    own.wait(lambda: httpx.get(f"{own.public_url}/readyz").status_code == 200, 60, "ready")
    own.wait(lambda: own.state()["converged"], 60, "every worker serves")

    def answers() -> dict[int, set[tuple[int, Any]]]:
        """Per worker slot: (status, candidates or error) of a few requests. The kernel gives
        an idle pod's connections to one worker, so the others are paused (SIGSTOP) meanwhile."""
        pids = [w["pid"] for w in own.state()["workers"]]
        seen: dict[int, set[tuple[int, Any]]] = {}
        for slot in range(len(pids)):
            others = [pid for i, pid in enumerate(pids) if i != slot]
            for pid in others:
                os.kill(pid, signal.SIGSTOP)
            try:
                for _ in range(3):
                    r = own.rank(BODY)
                    doc = r.json()
                    if r.status_code == 200:
                        assert r.headers["x-rankswap-worker"] == str(slot)
                    seen.setdefault(slot, set()).add(
                        (r.status_code, doc.get("candidates", doc.get("error")))
                    )
            finally:
                for pid in others:
                    os.kill(pid, signal.SIGCONT)
        return seen

    every = range(WORKERS)
    assert answers() == {slot: {(200, 300)} for slot in every}
    staged = work / "restored.db"
    product_db(f"sqlite:///{staged}", {"acme": 301}).close()
    os.replace(staged, db_path)  # what a restore from backup does
    assert answers() == {slot: {(200, 301)} for slot in every}

    db_path.rename(work / "away.db")
    assert answers() == {slot: {(503, "database_unavailable")} for slot in every}
    assert not db_path.exists()  # the ranker never creates an empty database in its place
    (work / "away.db").rename(db_path)
    assert answers() == {slot: {(200, 301)} for slot in every}
