"""Pods that start while the operator is down: the start-up ConfigMap end to end.

Real API server, real ranker processes, the real operator (as its ServiceAccount, with the RBAC
of manifests/operator/rbac.yaml). A new pod mounts the start-up ConfigMap the operator wrote,
read back from the API server and projected as the kubelet does.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from tests.integration.operator.conftest import Harness

from rankswap.podstate import STARTUP_FILE, StartupDocument
from rankswap_dev.launch import RankerProcess
from rankswap_dev.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def startup_doc(h: Harness, name: str = "lineitems") -> StartupDocument | None:
    data = h.startup_config_map(name)
    return StartupDocument.model_validate_json(data[STARTUP_FILE]) if data else None


def wait_startup(
    h: Harness, versions: tuple[str, str], phase: str, *, timeout: float = 60
) -> StartupDocument:
    """The ConfigMap's start-up bundle is ``versions`` and its rollout phase ``phase``."""

    def reached() -> StartupDocument | None:
        doc = startup_doc(h)
        if doc is None or doc.rollout_phase != phase:
            return None
        chosen = doc.startup_bundle()
        return doc if chosen is not None and chosen.versions == versions else None

    return wait_until(reached, timeout, 0.2, what=f"start-up ConfigMap on {versions}, {phase}")


def wait_serving_alone(pod: RankerProcess, versions: tuple[str, str]) -> dict[str, Any]:
    """The pod became ready by itself on ``versions`` from its start-up file."""

    def reached() -> dict[str, Any] | None:
        state = pod.state()
        active = state.get("active") or {}
        got = (
            (active.get("model") or {}).get("version"),
            (active.get("features") or {}).get("version"),
        )
        return state if state["ready"] and state["converged"] and got == versions else None

    return wait_until(reached, 60, 0.2, what=f"{pod.name} ready on {versions}")


def pod_report(obj: dict[str, Any], name: str) -> dict[str, Any]:
    reports: list[dict[str, Any]] = [p for p in obj["status"]["pods"] if p["name"] == name]
    (report,) = reports
    return report


def test_a_pod_started_while_the_operator_is_down_is_ready_and_reported(
    harness: Harness,
) -> None:
    h = harness
    d1, _ = h.world.dates
    load = h.serving(2, d1)
    doc = wait_startup(h, h.world.versions[d1], "Complete")
    assert doc.desired == doc.last_good
    obj = h.get("lineitems")
    (owner,) = h.core.read_namespaced_config_map(
        "lineitems-startup", h.namespace
    ).metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == (
        "ArtifactVersion",
        "lineitems",
        obj["metadata"]["uid"],
    )

    h.kill_operator()
    pod = h.add_pod("ranker-2", startup_from="lineitems")  # scale-out with no operator
    state = wait_serving_alone(pod, h.world.versions[d1])
    assert state["desired"]["source"] == "startup"
    assert state["desired"]["status"] == "loaded"
    wait_until(lambda: pod in h.kubelet.ready_pods(), 30, 0.2, what="ranker-2 Ready")

    # The operator comes back: it reports the new pod as serving, and pushes it nothing.
    h.start_operator()
    obj = h.wait_ready_on("lineitems", d1, pods=3)
    assert pod_report(obj, "ranker-2")["state"] == "Updated"
    assert not [e for e in h.events("lineitems") if e[1] == "Pushed" and "ranker-2" in e[2]]
    assert pod.state()["desired"]["source"] == "startup"

    load.stop()
    assert load.failures == [], load.failures[:5]


def test_a_pod_started_after_a_promotion_while_the_operator_is_down_gets_it_later(
    harness: Harness,
) -> None:
    # A promotion while the operator is down: a pod that starts then starts on the last good
    # bundle; the operator, back, pushes it (and the others) the desired one.
    h = harness
    d1, d2 = h.world.dates
    load = h.serving(2, d1)
    wait_startup(h, h.world.versions[d1], "Complete")
    h.kill_operator()
    h.apply(h.av_body("lineitems", d2))
    late = h.add_pod("ranker-3", startup_from="lineitems")
    wait_serving_alone(late, h.world.versions[d1])
    h.start_operator()
    h.wait_ready_on("lineitems", d2, pods=3, timeout=90)
    assert late.state()["desired"]["source"] == "admin"
    wait_startup(h, h.world.versions[d2], "Complete")
    load.stop()
    assert load.failures == [], load.failures[:5]


def test_a_canary_under_verification_is_not_what_new_pods_start_on(harness: Harness) -> None:
    h = harness
    d1, d2 = h.world.dates
    h.serving(2, d1)
    h.apply(h.av_body("lineitems", d2, rollout={"strategy": "Canary", "canaryVerifySeconds": 600}))
    h.wait_for(
        "lineitems",
        lambda o: conditions(o).get("Progressing", {}).get("reason") == "CanaryVerifying",
        timeout=60,
        what="canary verifying",
    )
    doc = wait_startup(h, h.world.versions[d1], "Verifying")
    assert doc.desired is not None and doc.desired.versions == h.world.versions[d2]
    h.kill_operator()
    pod = h.add_pod("ranker-9", startup_from="lineitems")
    wait_serving_alone(pod, h.world.versions[d1])
    h.start_operator()  # and the rollout goes on from where it stood, with the new pod
    h.apply(h.av_body("lineitems", d2))  # AllAtOnce now, so the test need not wait 600 s
    h.wait_ready_on("lineitems", d2, pods=3, timeout=90)


def test_after_a_failed_rollout_new_pods_start_on_the_last_good_bundle(
    harness: Harness,
) -> None:
    h = harness
    _, d2 = h.world.dates
    good = h.world.versions[d2]
    h.serving(2, d2)
    h.apply(h.av_body("lineitems", h.world.corrupt))
    h.wait_for(
        "lineitems",
        lambda o: conditions(o).get("Degraded", {}).get("reason") == "LoadFailed",
        timeout=90,
        what="Degraded/LoadFailed",
    )
    doc = wait_startup(h, good, "Failed")
    assert doc.desired is not None and doc.desired.versions != good  # the failed one
    assert doc.last_good is not None and doc.last_good.versions == good

    h.kill_operator()
    pod = h.add_pod("ranker-2", startup_from="lineitems")
    state = wait_serving_alone(pod, good)
    assert state["desired"]["source"] == "startup"
    assert state["last_error"] is None  # it never tried the failed bundle

    h.start_operator()
    obj = h.wait_for(
        "lineitems",
        lambda o: (
            len(o["status"].get("pods") or []) == 3
            and all(p["state"] == "Updated" for p in o["status"]["pods"])
        ),
        timeout=60,
        what="every pod reported Updated on the last good bundle",
    )
    assert pod_report(obj, "ranker-2")["modelVersion"] == good[0]
    assert conditions(obj)["Degraded"]["reason"] == "LoadFailed"  # still says what failed


def test_a_pod_without_a_start_up_configmap_waits_for_the_operator(harness: Harness) -> None:
    h = harness
    d1, _ = h.world.dates
    h.kill_operator()
    pod = h.add_pod("ranker-0", startup_from="lineitems")  # no resource, no ConfigMap yet
    time.sleep(1)
    assert pod.state()["ready"] is False and pod.state()["desired"] is None
    h.start_operator()
    h.apply(h.av_body("lineitems", d1))
    h.wait_ready_on("lineitems", d1, pods=1)
