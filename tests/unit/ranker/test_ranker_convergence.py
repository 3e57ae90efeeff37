"""Worker convergence through the pod-local desired file, and the coordinator that writes it.

Two WorkerSync objects stand for two worker processes (each with its own registry); the
multi-process version of the same runs in tests/integration/ranker.
"""

from __future__ import annotations

import functools
from datetime import date
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from tests.unit.ranker.builders import Published, publish_bundle

from rankswap.artifacts import parse_uri, read_manifest
from rankswap_dev.wait import wait_until
from rankswap_ranker import bundle as bundles
from rankswap_ranker.cache import CacheKeeper
from rankswap_ranker.convergence import PodView, RunDir, WorkerSync
from rankswap_ranker.coordinator import Coordinator, Refresher
from rankswap_ranker.errors import BadBundleRequest, URINotAllowed
from rankswap_ranker.metrics import RankerMetrics
from rankswap_ranker.registry import BundleRegistry

pytestmark = pytest.mark.timeout(60)


class Pod:
    """A supervisor's coordinator and two workers' syncs over one run folder, in-process."""

    def __init__(
        self, root: Path, allowed: list[str], cache: Path, workers: int = 2, keep: int = 0
    ) -> None:
        self.run_dir = RunDir(root)
        self.metrics = RankerMetrics(CollectorRegistry())
        self.view = PodView(self.run_dir, workers)
        self.coordinator = Coordinator(
            self.run_dir,
            self.view,
            self.metrics,
            allowed_roots=[parse_uri(a) for a in allowed],
            resolver=lambda m, f: bundles.resolve(m, f, cache),
            validator=bundles.load,
            cache=CacheKeeper(cache, keep=keep) if keep else None,  # as the server wires it
        )
        self.registries: list[BundleRegistry[bundles.Bundle]] = []
        self.syncs: list[WorkerSync] = []
        for slot in range(workers):
            reg: BundleRegistry[bundles.Bundle] = BundleRegistry(1)
            self.registries.append(reg)
            sync = WorkerSync(self.run_dir, slot, reg, self.metrics, bundles.load)
            sync.write_state()
            self.syncs.append(sync)

    def push(self, model_uri: str, features_uri: str) -> int:
        req = self.coordinator.request(model_uri, features_uri, "admin")
        assert self.coordinator.process_pending()
        for sync in self.syncs:
            sync.poll_once()
        return req.request_id

    def active(self) -> list[str | None]:
        return [r.active.bundle_id if r.active else None for r in self.registries]


@pytest.fixture
def pod(tmp_path: Path, file_root: str, cache_dir: Path) -> Pod:
    return Pod(tmp_path / "run", [file_root], cache_dir)


@pytest.fixture
def second(file_root: str, tmp_path: Path) -> Published:
    return publish_bundle(
        file_root, tmp_path / "src2", item_ids=range(1, 60), as_of=date(2026, 11, 27), weight=2.0
    )


def test_every_worker_applies_the_desired_bundle(pod: Pod, published: Published) -> None:
    rid = pod.push(published.model_uri, published.features_uri)
    assert pod.active() == [published.bundle_id] * 2
    state = pod.coordinator.state()
    assert state["converged"] and state["ready"]
    assert state["desired"]["status"] == "loaded"
    assert state["desired"]["request_id"] == rid
    assert state["active"]["bundle_id"] == published.bundle_id
    assert state["target"]["model"]["version"] == published.model.version
    assert [w["active"]["bundle_id"] for w in state["workers"]] == [published.bundle_id] * 2
    assert state["last_load"]["total_s"] >= 0


def test_switch_and_switch_back_uses_the_warm_bundle(
    pod: Pod, published: Published, second: Published
) -> None:
    pod.push(published.model_uri, published.features_uri)
    first_objects = [r.active for r in pod.registries]
    pod.push(second.model_uri, second.features_uri)
    assert pod.active() == [second.bundle_id] * 2
    state = pod.coordinator.state()
    assert [w["bundle_id"] for w in state["warm"]] == [published.bundle_id]
    pod.push(published.model_uri, published.features_uri)  # roll back
    assert [r.active for r in pod.registries] == first_objects  # same objects: no reload
    assert all(s.state().rollbacks == 1 for s in pod.syncs)
    assert pod.coordinator.state()["converged"]


def test_failed_load_keeps_the_active_bundle_and_records_the_error(
    pod: Pod, published: Published, file_root: str
) -> None:
    pod.push(published.model_uri, published.features_uri)
    path = Path(published.model_uri.removeprefix("file://")).parent / "2026-11-20" / "model.onnx"
    bad = published.model_uri.replace("2026-11-20", "2026-11-19")
    Path(bad.removeprefix("file://")).mkdir(parents=True)
    rid = pod.push(bad, published.features_uri)  # nothing published there
    assert pod.active() == [published.bundle_id] * 2
    state = pod.coordinator.state()
    assert state["desired"]["status"] == "failed"
    assert state["desired"]["request_id"] == rid
    assert state["last_error"]["type"] == "ManifestMissing"
    assert state["last_error"]["model_uri"] == bad
    assert state["active"]["bundle_id"] == published.bundle_id
    assert path.exists()
    # A good request afterwards clears the error.
    pod.push(published.model_uri, published.features_uri)
    assert pod.coordinator.state()["last_error"] is None


def test_a_worker_that_cannot_load_reports_it(pod: Pod, published: Published) -> None:
    def broken(ref: bundles.BundleRef) -> bundles.Bundle:
        raise OSError("disk on fire")

    pod.syncs[1].loader = broken
    pod.push(published.model_uri, published.features_uri)
    assert pod.active() == [published.bundle_id, None]
    state = pod.coordinator.state()
    assert not state["converged"]
    assert state["ready"]  # worker 0 serves the desired bundle: the pod stays ready
    assert state["desired"]["status"] == "failed"
    assert "disk on fire" in state["last_error"]["message"]
    assert state["workers"][1]["last_error"]["message"] == "disk on fire"
    # Pushing the same bundle again gives the lagging worker another chance.
    pod.syncs[1].loader = bundles.load
    pod.push(published.model_uri, published.features_uri)
    assert pod.active() == [published.bundle_id] * 2
    state = pod.coordinator.state()
    assert state["converged"] and state["desired"]["status"] == "loaded"
    assert state["last_error"] is None


def test_uris_outside_allowed_roots_or_malformed_are_refused(
    pod: Pod, published: Published, tmp_path: Path
) -> None:
    outside = (tmp_path / "elsewhere" / "models" / "ranker" / "2026-11-20").as_uri()
    with pytest.raises(URINotAllowed):
        pod.coordinator.request(outside, published.features_uri, "admin")
    with pytest.raises(URINotAllowed):
        pod.coordinator.request(published.model_uri, "s3://other/features/1.0.0/latest", "admin")
    with pytest.raises(BadBundleRequest):
        pod.coordinator.request("http://example.com/x", published.features_uri, "admin")
    with pytest.raises(BadBundleRequest):  # a features path given as the model
        pod.coordinator.request(published.features_uri, published.features_uri, "admin")
    assert pod.coordinator.state()["desired"] is None


def test_restarted_supervisor_resumes_the_recorded_bundle(
    pod: Pod, published: Published, tmp_path: Path, file_root: str, cache_dir: Path
) -> None:
    pod.push(published.model_uri, published.features_uri)
    again = Pod(tmp_path / "run", [file_root], cache_dir)
    assert again.coordinator.target is not None
    assert again.coordinator.target.bundle_id == published.bundle_id
    for sync in again.syncs:
        sync.poll_once()
    assert again.active() == [published.bundle_id] * 2


def test_refresher_follows_latest_and_pins_dated(
    pod: Pod, published: Published, file_root: str, tmp_path: Path
) -> None:
    c = pod.coordinator
    refresher = Refresher(c, 60, lambda uri: read_manifest(uri).version)
    c.request(published.latest_model_uri, published.latest_features_uri, "admin")
    assert c.process_pending()
    assert c.target is not None and c.target.bundle_id == published.bundle_id
    assert refresher.poll_once() is False  # nothing new
    newer = publish_bundle(
        file_root, tmp_path / "src3", item_ids=range(1, 70), as_of=date(2026, 11, 28), weight=3
    )
    assert refresher.poll_once() is True
    assert c.state()["desired"]["status"] == "loading"
    assert c.process_pending()
    assert c.target.bundle_id == newer.bundle_id
    assert c.state()["desired"]["model_uri"] == published.latest_model_uri  # still following
    # A dated bundle pins its version: nothing to follow.
    c.request(published.model_uri, published.features_uri, "admin")
    assert c.process_pending()
    assert refresher.poll_once() is False
    assert refresher.state().following == []


def test_loader_nice_and_poll_thread_start_and_stop(pod: Pod, published: Published) -> None:
    sync = WorkerSync(
        pod.run_dir,
        5,
        BundleRegistry(1),
        pod.metrics,
        functools.partial(bundles.load, intra_op_threads=1),
        poll_interval_s=0.05,
        nice=5,
    )
    sync.start()
    try:
        pod.coordinator.request(published.model_uri, published.features_uri, "admin")
        pod.coordinator.process_pending()
        wait_until(lambda: sync.registry.active is not None, 20, 0.05, what="a bundle active")
        assert sync.registry.active is not None
    finally:
        sync.stop()


def test_an_unexpected_failure_is_recorded_and_the_loader_goes_on(
    tmp_path: Path, file_root: str, cache_dir: Path, published: Published
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the run folder should be")
    pod = Pod(tmp_path / "run", [file_root], cache_dir, workers=0)
    pod.coordinator.run_dir = RunDir(blocker / "run")  # writing desired.json will fail
    pod.coordinator.request(published.model_uri, published.features_uri, "admin")
    assert pod.coordinator.process_pending() is True
    state = pod.coordinator.state()
    assert state["desired"]["status"] == "failed"
    assert state["last_error"]["stage"] == "record"
    assert pod.coordinator.process_pending() is False  # nothing left, nothing stuck


def test_ready_needs_one_serving_worker_and_converged_needs_all(
    pod: Pod, published: Published, second: Published
) -> None:
    """A worker that is restarting (its state file names a dead pid, then a fresh one loading
    before it takes connections) leaves the pod ready while the other serves; the pod is not
    converged meanwhile. A worker taking connections without a bundle makes it unready."""
    assert not pod.coordinator.state()["ready"]  # no bundle anywhere yet
    assert not pod.view.ready()
    pod.push(published.model_uri, published.features_uri)
    dead = WorkerSync(pod.run_dir, 1, BundleRegistry(1), pod.metrics, bundles.load)
    dead._state["pid"] = 2**22 + 1  # beyond pid_max: no such process
    dead.write_state()
    state = pod.coordinator.state()
    assert state["ready"] and pod.view.ready()
    assert not state["converged"] and not state["workers"][1]["alive"]
    fresh = WorkerSync(pod.run_dir, 1, BundleRegistry(1), pod.metrics, bundles.load)
    fresh.write_state()  # alive, nothing loaded yet
    state = pod.coordinator.state()
    assert state["ready"] and not state["converged"]
    fresh.accepting()  # were it to take connections without a bundle: not ready
    assert not pod.coordinator.state()["ready"] and not pod.view.ready()
    fresh.poll_once()
    assert pod.coordinator.state()["converged"]
    # While every worker switches to a new bundle, each keeps serving the previous one: ready.
    pod.coordinator.request(second.model_uri, second.features_uri, "admin")
    assert pod.coordinator.process_pending()
    state = pod.coordinator.state()
    assert state["ready"] and not state["converged"]


def test_the_operator_reads_the_state_the_coordinator_builds(
    pod: Pod, published: Published, second: Published
) -> None:
    """The real coordinator's document, through JSON, parsed by the operator's pod client."""
    import json

    from rankswap.podstate import PodState
    from rankswap_operator.podclient import admin_state_from_json

    pod.push(published.model_uri, published.features_uri)
    doc = json.loads(json.dumps(pod.coordinator.state()))
    assert PodState.model_validate(doc).converged
    seen = admin_state_from_json(doc)
    assert seen.converged and not seen.loading and seen.error is None
    assert seen.active_versions == (published.model.version, published.features.version)
    assert seen.desired_uris == (published.model_uri, published.features_uri)
    pod.coordinator.request(second.model_uri, second.features_uri, "admin")
    assert pod.coordinator.process_pending()  # validated; no worker has switched yet
    seen = admin_state_from_json(json.loads(json.dumps(pod.coordinator.state())))
    assert not seen.converged
    assert seen.active_versions == (published.model.version, published.features.version)
