"""The chart on a real node: `helm install` with the dev values and the images built here; the
operator runs in-cluster with the chart's ServiceAccount and RBAC, the rankers become Ready
through their real probes, and rollouts reach every pod while a load generator calls /v1/rank
through the ranker Service with 0 failed requests.

Marker ``node``: `make test-node` (needs root, the node binaries and the images; docs/NODE.md).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.node.conftest import HostPostgres
from tests.node.world import BUCKET, NodeWorld, build_node_world

from rankswap_dev.localkube.node import NodeCluster

pytestmark = [pytest.mark.node]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "rankswap"
NS = "rankswap-node"
RELEASE = "rs"
FULL = f"{RELEASE}-rankswap"
AV = "lineitems"
REPLICAS = 3


def wait_for(
    what: str, check: Callable[[], Any], timeout: float, *, detail: Callable[[], str] = lambda: ""
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what}: not reached in {timeout:.0f} s\n{detail()}")


@dataclass
class ServiceLoad:
    """/v1/rank through the ranker Service (its ClusterIP, routed to the node) until stopped;
    any answer but 200 and any connection error is a failure."""

    url: str
    requests: list[dict[str, Any]]
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    versions: dict[tuple[str, str], int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ServiceLoad:
        rng = random.Random(5)

        def loop() -> None:
            with httpx.Client(timeout=10) as http:
                while not self._stop.is_set():
                    try:
                        r = http.post(f"{self.url}/v1/rank", json=rng.choice(self.requests))
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                        continue
                    self.sent += 1
                    if r.status_code != 200:
                        self.failures.append(f"HTTP {r.status_code}: {r.text[:200]}")
                        continue
                    doc = r.json()
                    key = (doc["model_version"], doc["features_version"])
                    self.versions[key] = self.versions.get(key, 0) + 1
                    time.sleep(0.02)

        self._thread = threading.Thread(target=loop, name="service-load", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)


class Release:
    def __init__(self, node: NodeCluster, world: NodeWorld, work: Path) -> None:
        self.node, self.world, self.work = node, world, work

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        return self.node.kubectl(*args, "-n", NS, input=input, timeout=timeout).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def apply_av(
        self, when: date, *, features: dict[str, Any] | None = None, **rollout: Any
    ) -> None:
        uris = self.world.uris(when)
        spec: dict[str, Any] = {
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/instance": RELEASE,
                    "app.kubernetes.io/component": "ranker",
                }
            },
            "model": {"uri": uris["model"]},
            "features": features or {"uri": uris["features"]},
            # as the chart's own ArtifactVersion: the admin token from the chart's Secret
            "admin": {
                "port": 8081,
                "tokenSecretRef": {"name": f"{FULL}-ranker-admin", "key": "token"},
            },
            "rollout": {"strategy": "AllAtOnce", "podTimeoutSeconds": 120, **rollout},
        }
        doc = {
            "apiVersion": "rankswap.io/v1alpha1",
            "kind": "ArtifactVersion",
            "metadata": {"name": AV, "namespace": NS},
            "spec": spec,
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(doc))

    def av(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.json("artifactversion", AV)
        return obj

    def serving(
        self, when: date, pods: int = REPLICAS, versions: tuple[str, str] | None = None
    ) -> dict[str, Any] | None:
        want = versions or self.world.versions[when]
        obj = self.av()
        st = obj.get("status") or {}
        ready = {c["type"]: c["status"] for c in st.get("conditions") or []}.get("Ready")
        got = st.get("pods") or []
        ok = (
            st.get("observedGeneration") == obj["metadata"]["generation"]
            and ready == "True"
            and len(got) == pods
            and all((p.get("modelVersion"), p.get("featuresVersion")) == want for p in got)
        )
        return obj if ok else None

    def wait_serving(self, when: date, timeout: float = 180) -> dict[str, Any]:
        found: dict[str, Any] = wait_for(
            f"every ranker pod serving {when}",
            lambda: self.serving(when),
            timeout,
            detail=self.diagnose,
        )
        return found

    def start_from(self, when: date) -> None:
        """Every pod on ``when`` by a plain AllAtOnce rollout, whatever an earlier test left (a
        test that failed half-way must not fail the ones after it)."""
        self.apply_av(when)
        self.wait_serving(when)

    def ranker_pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.json(
            "pods", "-l", f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=ranker"
        )["items"]
        return items

    def service_url(self) -> str:
        svc = self.json("service", f"{FULL}-ranker")
        return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"

    def diagnose(self) -> str:
        parts = []
        for args in (
            ("get", "pods", "-o", "wide"),
            ("get", "av", "-o", "json"),
            ("get", "events", "--sort-by=.lastTimestamp"),
            ("logs", f"deployment/{FULL}-operator", "--tail=60"),
        ):
            proc = self.node.kubectl(*args, "-n", NS, check=False, timeout=30)
            parts.append(f"$ kubectl {' '.join(args)}\n{proc.stdout[-4000:]}{proc.stderr[-1000:]}")
        return "\n".join(parts)


def node_values(
    node: NodeCluster, moto: str, tenant: str, prestop: int = 3, pipelines: bool = False
) -> dict[str, Any]:
    """What differs from values-dev.yaml here: the local images (never pulled), the S3 API and
    DB on the host side of the node's link, 3 small rankers, the AV applied by the tests."""
    image = {"tag": "0.1.0", "pullPolicy": "Never"}
    return {
        "store": {
            "bucket": BUCKET,
            "prefix": "artifacts",
            "endpoint": moto,
            "region": "us-east-1",
            "credentialsSecret": "rankswap-store-credentials",
        },
        "operator": {
            "image": {"repository": "localhost/rankswap/operator", **image},
            "watchNamespaces": [NS],
            "busyIntervalSeconds": 0.5,
            "idleIntervalSeconds": 5,
        },
        "ranker": {
            "image": {"repository": "localhost/rankswap/ranker", **image},
            "replicas": REPLICAS,
            "workers": 1,
            "database": {"secretName": "rankswap-db"},
            "preStopSleepSeconds": prestop,
            "resources": {
                "requests": {"cpu": "50m", "memory": "256Mi"},
                "limits": {"memory": "1Gi"},
            },
        },
        # The tests apply the ArtifactVersion `lineitems`: the rankers mount its start-up ConfigMap.
        "artifactVersion": {"create": False, "name": AV},
        "tests": {"enabled": True, "tenantId": tenant},
        "pipelines": {
            "enabled": pipelines,
            "image": {"repository": "localhost/rankswap/training", **image},
            "resources": {
                "requests": {"cpu": "100m", "memory": "512Mi"},
                "limits": {"memory": "3Gi"},
            },
        },
    }


@pytest.fixture(scope="module")
def world(
    node_postgres: HostPostgres, node_moto: str, tmp_path_factory: pytest.TempPathFactory
) -> NodeWorld:
    return build_node_world(node_postgres.url, tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def release(
    node: NodeCluster,
    node_postgres: HostPostgres,
    node_moto: str,
    world: NodeWorld,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    work = tmp_path_factory.mktemp("release")
    rel = Release(node, world, work)
    node.kubectl("create", "namespace", NS)
    rel.kubectl(
        "create", "secret", "generic", "rankswap-db", f"--from-literal=url={node_postgres.pod_url}"
    )
    rel.kubectl(
        "create", "secret", "generic", "rankswap-store-credentials",
        "--from-literal=AWS_ACCESS_KEY_ID=testing", "--from-literal=AWS_SECRET_ACCESS_KEY=testing",
    )  # fmt: skip
    values = work / "node-values.yaml"
    tenant = world.sample_requests[0]["tenant_id"]
    values.write_text(json.dumps(node_values(node, node_moto, tenant)))
    t0 = time.monotonic()
    node.helm(
        "install", RELEASE, str(CHART), "-n", NS,
        "-f", str(CHART / "values-dev.yaml"), "-f", str(values),
        timeout=120,
    )  # fmt: skip
    rel.values = values  # type: ignore[attr-defined]
    rel.installed_at = t0  # type: ignore[attr-defined]
    yield rel


# The first test also pays for the module's fixtures: the world (datagen and two trainings on
# PostgreSQL) and helm install.
@pytest.mark.timeout(1800)
def test_helm_install_then_apply_reaches_every_real_pod_with_zero_failed_requests(
    release: Release, world: NodeWorld
) -> None:
    rel = release
    d1, d2 = world.dates
    t0: float = rel.installed_at  # type: ignore[attr-defined]
    # The operator Deployment is Available through its real liveness endpoint, in-cluster.
    rel.kubectl("rollout", "status", f"deployment/{FULL}-operator", "--timeout=300s", timeout=320)
    operator_ready = time.monotonic() - t0
    # Rankers stay unready (no bundle) until the ArtifactVersion is applied.
    t1 = time.monotonic()
    rel.apply_av(d1)
    status = rel.wait_serving(d1, timeout=300)
    applied_to_confirmed = time.monotonic() - t1
    rel.kubectl("rollout", "status", f"deployment/{FULL}-ranker", "--timeout=120s", timeout=140)
    all_ready = time.monotonic() - t0
    pods = rel.ranker_pods()
    assert len(pods) == REPLICAS
    names = {p["metadata"]["name"] for p in pods}
    assert {p["name"] for p in status["status"]["pods"]} == names
    for p in pods:
        assert p["status"]["podIP"].startswith("10.214.")
        ready = {c["type"]: c["status"] for c in p["status"]["conditions"]}
        assert ready["Ready"] == "True"
    table = rel.kubectl("get", "av", AV)
    assert "True" in table, table
    print(
        f"\nhelm install -> operator ready {operator_ready:.1f} s; apply -> {REPLICAS} pods "
        f"confirmed {applied_to_confirmed:.1f} s; install -> all Ready {all_ready:.1f} s"
    )

    # Promote to d2, then roll back to d1 (warm), with load through the Service all along.
    with ServiceLoad(rel.service_url(), world.sample_requests) as load:
        wait_for("first answers through the Service", lambda: load.sent > 20, 60)
        t2 = time.monotonic()
        rel.apply_av(d2)
        rel.wait_serving(d2)
        promote = time.monotonic() - t2
        wait_for(
            "answers from d2 through the Service",
            lambda: load.versions.get(world.versions[d2], 0) > 10,
            60,
        )
        t3 = time.monotonic()
        rel.apply_av(d1)
        rel.wait_serving(d1)
        rollback = time.monotonic() - t3
        wait_for(
            "answers from d1 again",
            lambda: load.versions.get(world.versions[d1], 0) > 10,
            60,
        )
    assert load.failures == [], load.failures[:10]
    assert set(load.versions) <= {world.versions[d1], world.versions[d2]}
    print(
        f"promote {promote:.1f} s, rollback {rollback:.1f} s, {load.sent} requests "
        f"through the Service, 0 failed"
    )


@pytest.mark.timeout(600)
def test_deleted_ranker_pod_is_replaced_and_brought_to_the_desired_bundle(
    release: Release, world: NodeWorld
) -> None:
    rel = release
    d1 = world.dates[0]
    rel.start_from(d1)
    victim = rel.ranker_pods()[0]["metadata"]["name"]
    with ServiceLoad(rel.service_url(), world.sample_requests) as load:
        wait_for("answers through the Service", lambda: load.sent > 20, 60)
        rel.kubectl("delete", "pod", victim, "--wait=false")

        def replaced() -> bool:
            names = {p["metadata"]["name"] for p in rel.ranker_pods()}
            return victim not in names and rel.serving(d1) is not None

        wait_for(
            f"{victim} replaced and the new pod serving {d1}", replaced, 240, detail=rel.diagnose
        )
        sent = load.sent
        wait_for("more answers", lambda: load.sent > sent + 20, 60)
    assert load.failures == [], load.failures[:10]


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


@pytest.mark.timeout(600)
def test_canaried_promotion_then_rollback_to_the_warm_version(
    release: Release, world: NodeWorld
) -> None:
    rel = release
    d1, d2 = world.dates
    rel.start_from(d1)
    # d2 was served before (the first test), so without instantRollback: false the operator
    # would take it as a rollback and swap every pod at once, skipping the canary.
    canary: dict[str, Any] = {
        "strategy": "Canary",
        "canaryPods": 1,
        "canaryVerifySeconds": 6,
        "instantRollback": False,
    }
    with ServiceLoad(rel.service_url(), world.sample_requests) as load:
        wait_for("answers through the Service", lambda: load.sent > 20, 60)
        rel.apply_av(d2, batchSize=2, **canary)

        def canary_verifying() -> bool:
            obj = rel.av()
            progressing = conditions(obj).get("Progressing", {})
            on_new = [
                p for p in (obj.get("status") or {}).get("pods") or []
                if (p.get("modelVersion"), p.get("featuresVersion")) == world.versions[d2]
            ]  # fmt: skip
            return progressing.get("reason") == "CanaryVerifying" and len(on_new) == 1

        wait_for("one canary pod verifying d2", canary_verifying, 120, detail=rel.diagnose)
        rel.wait_serving(d2)
        rel.apply_av(d1)  # the warm version: a pointer swap in every pod
        rel.wait_serving(d1)
        sent = load.sent
        wait_for("more answers", lambda: load.sent > sent + 20, 60)
    assert load.failures == [], load.failures[:10]
    assert world.versions[d2] in load.versions


@pytest.mark.timeout(600)
def test_corrupt_model_is_refused_rolled_back_and_pods_keep_serving(
    release: Release, world: NodeWorld
) -> None:
    rel = release
    d1 = world.dates[0]
    rel.start_from(d1)
    with ServiceLoad(rel.service_url(), world.sample_requests) as load:
        wait_for("answers through the Service", lambda: load.sent > 20, 60)
        uris = world.uris(world.corrupt)
        rel.kubectl(
            "patch", "av", AV, "--type=merge", "-p",
            json.dumps({"spec": {"model": {"uri": uris["model"]}}}),
        )  # fmt: skip

        def degraded() -> bool:
            obj = rel.av()
            cond = conditions(obj).get("Degraded", {})
            pods = (obj.get("status") or {}).get("pods") or []
            return (
                cond.get("status") == "True"
                and cond.get("reason") == "LoadFailed"
                and len(pods) == REPLICAS
                and all(
                    (p.get("modelVersion"), p.get("featuresVersion")) == world.versions[d1]
                    for p in pods
                )
            )

        wait_for("Degraded/LoadFailed, every pod back on d1", degraded, 240, detail=rel.diagnose)
        sent = load.sent
        wait_for("more answers", lambda: load.sent > sent + 20, 60)
    assert load.failures == [], load.failures[:10]
    assert set(load.versions) == {world.versions[d1]}
    # the spec is left as the user wrote it; a good spec clears the condition
    assert rel.av()["spec"]["model"]["uri"] == world.uris(world.corrupt)["model"]
    rel.apply_av(d1)
    rel.wait_serving(d1)


@pytest.mark.timeout(900)
def test_rollout_restart_replaces_every_pod_and_the_operator_serves_them(
    release: Release, world: NodeWorld
) -> None:
    rel = release
    d1 = world.dates[0]
    rel.start_from(d1)
    before = {p["metadata"]["name"] for p in rel.ranker_pods()}
    with ServiceLoad(rel.service_url(), world.sample_requests) as load:
        wait_for("answers through the Service", lambda: load.sent > 20, 60)
        rel.kubectl("rollout", "restart", f"deployment/{FULL}-ranker")
        rel.kubectl("rollout", "status", f"deployment/{FULL}-ranker", "--timeout=600s", timeout=620)

        def all_new_and_serving() -> bool:
            names = {
                p["metadata"]["name"]
                for p in rel.ranker_pods()
                if not p["metadata"].get("deletionTimestamp")
            }
            return len(names) == REPLICAS and not names & before and rel.serving(d1) is not None

        wait_for("every pod replaced and serving d1", all_new_and_serving, 240, detail=rel.diagnose)
        sent = load.sent
        wait_for("more answers", lambda: load.sent > sent + 20, 60)
    assert load.failures == [], load.failures[:10]


@pytest.mark.timeout(600)
def test_operator_pod_deleted_mid_rollout_its_replacement_resumes(
    release: Release, world: NodeWorld
) -> None:
    rel = release
    d1, d2 = world.dates
    rel.start_from(d1)
    with ServiceLoad(rel.service_url(), world.sample_requests) as load:
        wait_for("answers through the Service", lambda: load.sent > 20, 60)
        rel.apply_av(
            d2,
            strategy="Canary",
            canaryPods=1,
            canaryVerifySeconds=15,
            batchSize=1,
            instantRollback=False,  # d2 was served before: a canary, not an instant rollback
        )
        wait_for(
            "canary verifying",
            lambda: conditions(rel.av()).get("Progressing", {}).get("reason") == "CanaryVerifying",
            120,
            detail=rel.diagnose,
        )
        operator = rel.json(
            "pods",
            "-l",
            f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator",
        )["items"][0]["metadata"]["name"]
        rel.kubectl("delete", "pod", operator, "--wait=false")
        rel.wait_serving(d2, timeout=300)
        rel.kubectl("rollout", "status", f"deployment/{FULL}-operator", "--timeout=120s")
        now = rel.json(
            "pods",
            "-l",
            f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator",
        )["items"]
        assert operator not in {p["metadata"]["name"] for p in now}
        rel.apply_av(d1)
        rel.wait_serving(d1)
    assert load.failures == [], load.failures[:10]


@pytest.mark.timeout(600)
def test_rankers_scaled_out_while_the_operator_is_scaled_to_zero_become_ready(
    release: Release, world: NodeWorld
) -> None:
    """Pods that start while the operator is down load the last good bundle from the start-up
    ConfigMap the kubelet projects into them; the operator, back, reports them Updated."""
    rel = release
    d1 = world.dates[0]
    rel.start_from(d1)
    startup = json.loads(rel.json("configmap", f"{AV}-startup")["data"]["startup.json"])
    assert (startup["last_good"]["model_version"], startup["last_good"]["features_version"]) == (
        world.versions[d1]
    )
    before = {p["metadata"]["name"] for p in rel.ranker_pods()}
    with ServiceLoad(rel.service_url(), world.sample_requests) as load:
        wait_for("answers through the Service", lambda: load.sent > 20, 60)
        rel.kubectl("scale", f"deployment/{FULL}-operator", "--replicas=0")
        wait_for(
            "the operator pod gone",
            lambda: (
                not rel.json(
                    "pods",
                    "-l",
                    f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator",
                )["items"]
            ),
            120,
        )
        rel.kubectl("scale", f"deployment/{FULL}-ranker", f"--replicas={REPLICAS + 2}")
        rel.kubectl("rollout", "status", f"deployment/{FULL}-ranker", "--timeout=300s", timeout=320)
        new = [p for p in rel.ranker_pods() if p["metadata"]["name"] not in before]
        assert len(new) == 2
        for p in new:
            ready = {c["type"]: c["status"] for c in p["status"]["conditions"]}
            assert ready["Ready"] == "True", p["metadata"]["name"]
        sent = load.sent
        wait_for("more answers", lambda: load.sent > sent + 40, 60)
        rel.kubectl("scale", f"deployment/{FULL}-operator", "--replicas=1")
        wait_for(
            "the operator reports every pod, the new ones too, on d1",
            lambda: rel.serving(d1, pods=REPLICAS + 2),
            240,
            detail=rel.diagnose,
        )
        rel.kubectl("scale", f"deployment/{FULL}-ranker", f"--replicas={REPLICAS}")
        wait_for("back to 3 pods", lambda: rel.serving(d1) is not None, 240, detail=rel.diagnose)
    assert load.failures == [], load.failures[:10]
    assert set(load.versions) == {world.versions[d1]}


@pytest.mark.timeout(1200)
def test_helm_upgrade_adds_the_pipelines_helm_test_passes_and_a_features_job_reaches_the_pods(
    release: Release, world: NodeWorld, node_moto: str
) -> None:
    from rankswap.artifacts import read_manifest

    rel = release
    d2 = world.dates[1]
    latest = world.uris(d2)["features"].rsplit("/", 1)[0] + "/latest"
    rel.apply_av(d2, features={"uri": latest, "refreshIntervalSeconds": 10})
    # latest/ is the newest published features (the world's bad dates republished d2's)
    before = (world.versions[d2][0], read_manifest(latest).version)
    wait_for("every pod following latest/", lambda: rel.serving(d2, versions=before), 180)
    tenant = world.sample_requests[0]["tenant_id"]
    values = rel.work / "node-values-pipelines.yaml"
    values.write_text(json.dumps(node_values(rel.node, node_moto, tenant, pipelines=True)))
    with ServiceLoad(rel.service_url(), world.sample_requests) as load:
        wait_for("answers through the Service", lambda: load.sent > 20, 60)
        rel.node.helm(
            "upgrade", RELEASE, str(CHART), "-n", NS,
            "-f", str(CHART / "values-dev.yaml"), "-f", str(values), timeout=120,
        )  # fmt: skip
        assert {c["metadata"]["name"] for c in rel.json("cronjobs")["items"]} == {
            f"{FULL}-features",
            f"{FULL}-model",
        }
        # helm test: its pod calls the ranker Service by its DNS name (CoreDNS on the node).
        tested = rel.node.helm("test", RELEASE, "-n", NS, "--logs", timeout=300)
        assert "Phase:          Succeeded" in tested.stdout, tested.stdout
        # The daily features pipeline as a Job from its CronJob: a new features version in
        # the store's latest/, which the pods follow.
        rel.kubectl("create", "job", f"--from=cronjob/{FULL}-features", "features-now")
        rel.kubectl(
            "wait", "--for=condition=complete", "job/features-now", "--timeout=900s", timeout=920
        )
        new = read_manifest(latest).version
        assert new != before[1]
        want = (world.versions[d2][0], new)
        wait_for(
            "every pod on the new features version",
            lambda: rel.serving(d2, versions=want),
            180,
            detail=rel.diagnose,
        )
        wait_for("answers with the new features", lambda: load.versions.get(want, 0) > 10, 60)
    assert load.failures == [], load.failures[:10]
