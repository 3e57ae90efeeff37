"""ArtifactVersion rollouts end to end: real API server, real ranker processes, real operator.

A load generator sends /v1/rank requests to the ready pods throughout; no request may fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest
from tests.integration.operator.conftest import Harness

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def reasons(h: Harness, name: str) -> set[str]:
    return {reason for _, reason, _ in h.events(name)}


def rankswap_cli(h: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(h.cluster.kubeconfig)}
    return subprocess.run(
        [sys.executable, "-m", "rankswap.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_promote_then_roll_back_to_a_warm_version(harness: Harness) -> None:
    h = harness
    d1, d2 = h.world.dates
    for i in range(3):
        h.add_pod(f"ranker-{i}")
    h.apply(h.av_body("lineitems", d1))
    # What a user or a pipeline runs: the Ready condition works with kubectl wait.
    h.cluster.kubectl(
        "wait", "--for=condition=Ready", "av/lineitems", "-n", h.namespace, "--timeout=90s"
    )
    h.wait_ready_on("lineitems", d1, pods=3)
    load = h.load()

    h.apply(h.av_body("lineitems", d2))
    h.wait_ready_on("lineitems", d2, pods=3)
    for ranker in h.rankers.values():
        warm = [b["model"]["version"] for b in ranker.state()["warm"]]
        assert h.world.versions[d1][0] in warm, "the previous bundle stays warm"

    done = rankswap_cli(h, "rollback", "lineitems", "-n", h.namespace, "--to", d1.isoformat())
    assert done.returncode == 0, done.stderr
    obj = h.wait_ready_on("lineitems", d1, pods=3)
    load.stop()

    assert load.failures == [], load.failures[:5]
    assert load.sent > 20
    assert {h.world.versions[d1], h.world.versions[d2]} <= load.versions_seen
    outcomes = [e["outcome"] for e in obj["status"]["history"]]
    assert outcomes == ["Succeeded", "Succeeded", "Succeeded"]
    assert obj["status"]["lastGood"]["modelVersion"] == h.world.versions[d1][0]
    assert {"RolloutStarted", "RolloutSucceeded", "Pushed"} <= reasons(h, "lineitems")

    table = h.cluster.kubectl("get", "av", "-n", h.namespace).stdout
    header = table.splitlines()[0].split()
    assert header[:6] == ["NAME", "MODEL", "FEATURES", "UPDATED", "READY", "REASON"]
    assert h.world.versions[d1][0] in table and "3/3" in table

    status = rankswap_cli(h, "status", "lineitems", "-n", h.namespace)
    assert status.returncode == 0 and "ranker-2" in status.stdout and "Updated" in status.stdout


def test_canary_goes_first_and_is_verified_before_the_rest(harness: Harness) -> None:
    h = harness
    d1, d2 = h.world.dates
    load = h.serving(4, d1)

    canary = {"strategy": "Canary", "canaryPods": 1, "canaryVerifySeconds": 4, "batchSize": 2}
    h.apply(h.av_body("lineitems", d2, rollout=canary))
    new = h.world.versions[d2][0]

    def canary_only(obj: dict[str, Any]) -> bool:
        pods = obj["status"].get("pods") or []
        on_new = [p["name"] for p in pods if p.get("modelVersion") == new]
        return conditions(obj).get("Progressing", {}).get(
            "reason"
        ) == "CanaryVerifying" and on_new == ["ranker-0"]

    h.wait_for(
        "lineitems", canary_only, timeout=60, what="canary pod alone on the new bundle, verifying"
    )
    h.wait_ready_on("lineitems", d2, pods=4)
    load.stop()
    assert load.failures == [], load.failures[:5]
    assert "CanaryHealthy" in reasons(h, "lineitems")


def test_bad_versions_are_refused_and_pods_keep_the_last_good_bundle(harness: Harness) -> None:
    h = harness
    d1, d2 = h.world.dates
    load = h.serving(2, d2)
    good = h.world.versions[d2]

    # A corrupt model: the pods refuse it (checksum), the operator rolls back, says so, keeps the spec.
    h.apply(h.av_body("lineitems", h.world.corrupt))

    def degraded(reason: str) -> Any:
        def check(obj: dict[str, Any]) -> bool:
            cond = conditions(obj)
            return (
                obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
                and cond.get("Degraded", {}).get("status") == "True"
                and cond["Degraded"].get("reason") == reason
                and all(
                    (p.get("modelVersion"), p.get("featuresVersion")) == good
                    for p in obj["status"].get("pods") or []
                )
                and all(p.get("state") == "Updated" for p in obj["status"].get("pods") or [])
            )

        return check

    obj = h.wait_for(
        "lineitems",
        degraded("LoadFailed"),
        timeout=90,
        what="Degraded/LoadFailed with pods back on the good bundle",
    )
    assert "ChecksumMismatch" in conditions(obj)["Degraded"]["message"]
    assert conditions(obj)["Ready"]["status"] == "False"
    assert obj["spec"]["model"]["uri"].endswith(h.world.corrupt.isoformat()), (
        "the spec is not edited"
    )
    assert obj["status"]["history"][-1]["outcome"] == "RolledBack"
    assert {"RolloutFailed", "RollingBack"} <= reasons(h, "lineitems")

    # A model that needs another feature schema: refused before any pod is touched.
    h.apply(h.av_body("lineitems", h.world.mismatch))
    obj = h.wait_for(
        "lineitems", degraded("SchemaMismatch"), timeout=60, what="Degraded/SchemaMismatch"
    )
    assert "0.0.0-nonexistent" in conditions(obj)["Degraded"]["message"]

    # And a good spec recovers.
    h.apply(h.av_body("lineitems", d1))
    h.wait_ready_on("lineitems", d1, pods=2)
    load.stop()
    assert load.failures == [], load.failures[:5]


def test_pods_that_appear_during_and_after_a_rollout_get_the_bundle(harness: Harness) -> None:
    h = harness
    d1, d2 = h.world.dates
    h.add_pod("ranker-a")
    h.add_pod("ranker-b")
    h.apply(h.av_body("lineitems", d1))
    h.wait_ready_on("lineitems", d1, pods=2)
    load = h.load()

    h.apply(h.av_body("lineitems", d2, rollout={"strategy": "Canary", "canaryVerifySeconds": 3}))
    h.add_pod("ranker-c")  # scale-out during the rollout
    h.wait_ready_on("lineitems", d2, pods=3)

    h.add_pod("ranker-d")  # scale-out afterwards
    h.wait_ready_on("lineitems", d2, pods=4)

    h.kill_pod("ranker-a")  # a pod dies; its replacement comes up empty and gets the bundle
    h.add_pod("ranker-a2")
    obj = h.wait_ready_on("lineitems", d2, pods=4)
    load.stop()
    assert sorted(p["name"] for p in obj["status"]["pods"]) == [
        "ranker-a2",
        "ranker-b",
        "ranker-c",
        "ranker-d",
    ]
    assert load.failures == [], load.failures[:5]


def test_operator_restarted_mid_rollout_resumes(harness: Harness) -> None:
    h = harness
    d1, d2 = h.world.dates
    load = h.serving(3, d1)

    h.apply(
        h.av_body(
            "lineitems",
            d2,
            rollout={"strategy": "Canary", "canaryVerifySeconds": 5, "batchSize": 1},
        )
    )
    h.wait_for(
        "lineitems",
        lambda o: conditions(o).get("Progressing", {}).get("reason") == "CanaryVerifying",
        timeout=60,
        what="canary verifying",
    )
    h.kill_operator()
    time.sleep(1)
    h.start_operator()
    obj = h.wait_ready_on("lineitems", d2, pods=3, timeout=90)
    load.stop()
    assert [e["outcome"] for e in obj["status"]["history"]] == ["Succeeded", "Succeeded"]
    assert load.failures == [], load.failures[:5]


def test_roll_back_to_a_version_no_longer_warm(harness: Harness) -> None:
    h = harness
    d1, d2 = h.world.dates
    load = h.serving(2, d1, env={"RANKSWAP_WARM_BUNDLES": "0"})
    h.apply(h.av_body("lineitems", d2))
    h.wait_ready_on("lineitems", d2, pods=2)
    assert all(r.state()["warm"] == [] for r in h.rankers.values())
    h.apply(h.av_body("lineitems", d1))
    h.wait_ready_on("lineitems", d1, pods=2)
    load.stop()
    assert load.failures == [], load.failures[:5]


def test_rollout_from_an_s3_store(harness: Harness, world_s3: Any) -> None:
    h = harness
    h.world = world_s3
    d1, d2 = h.world.dates
    load = h.serving(2, d1, root=world_s3.s3_root, workers=2)
    h.apply(h.av_body("lineitems", d2, root=world_s3.s3_root))
    h.wait_ready_on("lineitems", d2, pods=2)
    load.stop()
    assert load.failures == [], load.failures[:5]
    for ranker in h.rankers.values():
        state = ranker.state()
        assert len(state["workers"]) == 2 and state["converged"]
