"""Analysis-gated canaries end to end: real API server, ranker pods, operator, live traffic.

The pods compare every live request (``RANKSWAP_SHADOW_SAMPLE_RATE=1``) so the tests need
little traffic; the load generator runs throughout and no request may fail.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.integration.operator.conftest import Harness
from tests.integration.operator.test_rollouts import conditions, reasons

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SHADOW = {"RANKSWAP_SHADOW_SAMPLE_RATE": "1"}
ANALYSIS = {
    "minCompared": 40,
    "waitSeconds": 90,
    "minTop1Agreement": 0.5,
    "minTopKOverlap": 0.5,
    "maxPSI": 1.0,
    "maxErrorRate": 0.0,
}


def canary(**analysis: Any) -> dict[str, Any]:
    return {
        "strategy": "Canary",
        "canaryPods": 1,
        "canaryVerifySeconds": 1,
        "batchSize": 2,
        "analysis": {**ANALYSIS, **analysis},
    }


def analysis_of(obj: dict[str, Any]) -> dict[str, Any]:
    return ((obj.get("status") or {}).get("rollout") or {}).get("analysis") or {}


def test_a_bad_but_loadable_model_is_caught_by_the_canary_analysis(harness: Harness) -> None:
    h = harness
    _, d2 = h.world.dates
    load = h.serving(3, d2, env=SHADOW)
    h.apply(h.av_body("lineitems", h.world.permuted, rollout=canary()))
    # What a pipeline runs: wait for the verdict.
    h.cluster.kubectl(
        "wait",
        "--for=jsonpath={.status.rollout.analysis.verdict}=Failed",
        "av/lineitems",
        "-n",
        h.namespace,
        "--timeout=120s",
    )
    obj = h.wait_for(
        "lineitems",
        lambda o: (
            conditions(o).get("Degraded", {}).get("reason") == "AnalysisFailed"
            and all(
                (p.get("modelVersion"), p.get("featuresVersion")) == h.world.versions[d2]
                for p in o["status"]["pods"]
            )
        ),
        timeout=60,
        what="analysis failed and every pod back on the last good bundle",
    )
    load.stop()
    assert load.failures == [], load.failures[:5]
    st = obj["status"]
    message = conditions(obj)["Degraded"]["message"]
    assert "top-1 agreement" in message and "< min 0.5" in message, message
    assert st["rollout"]["canaryPods"] == ["ranker-0"]
    result = analysis_of(obj)
    assert result["compared"] >= 40 and result["measured"]["top1Agreement"] < 0.5
    assert st["history"][-1]["outcome"] == "RolledBack"
    assert st["history"][-1]["analysis"] == "Failed"
    assert {"AnalysisFailed", "RolloutFailed", "RollingBack"} <= reasons(h, "lineitems")
    on_bad = {p["name"] for p in st["pods"] if p.get("modelVersion") != h.world.versions[d2][0]}
    assert on_bad == set()
    table = h.cluster.kubectl("get", "av", "-n", h.namespace).stdout
    assert "ANALYSIS" in table.splitlines()[0] and "Failed" in table


def test_a_good_model_passes_the_analysis_and_reaches_every_pod(harness: Harness) -> None:
    h = harness
    d1, d2 = h.world.dates
    load = h.serving(3, d1, env=SHADOW)
    h.apply(h.av_body("lineitems", d2, rollout=canary()))
    obj = h.wait_ready_on("lineitems", d2, pods=3, timeout=150)
    load.stop()
    assert load.failures == [], load.failures[:5]
    result = analysis_of(obj)
    assert result["verdict"] == "Passed", result
    assert result["compared"] >= 40
    assert obj["status"]["history"][-1]["outcome"] == "Succeeded"
    assert obj["status"]["history"][-1]["analysis"] == "Passed"
    assert "AnalysisPassed" in reasons(h, "lineitems")


def test_not_enough_traffic_pauses_or_fails_as_the_spec_says(harness: Harness) -> None:
    h = harness
    d1, d2 = h.world.dates
    load = h.serving(2, d1, env=SHADOW)
    load.stop()  # no traffic from now on
    assert load.failures == [], load.failures[:5]
    h.apply(
        h.av_body(
            "lineitems",
            d2,
            rollout=canary(minCompared=1000, waitSeconds=3, insufficientTraffic="Pause"),
        )
    )
    obj = h.wait_for(
        "lineitems",
        lambda o: conditions(o).get("Progressing", {}).get("reason") == "AnalysisPaused",
        timeout=60,
        what="the canary paused for lack of traffic",
    )
    assert analysis_of(obj)["verdict"] == "Paused"
    assert "not enough traffic" in conditions(obj)["Progressing"]["message"]
    new = h.world.versions[d2][0]
    assert [p["name"] for p in obj["status"]["pods"] if p.get("modelVersion") == new] == [
        "ranker-0"
    ], "only the canary serves the new bundle while paused"

    # The same with insufficientTraffic: Fail: the rollout fails and the canary is rolled back.
    h.apply(
        h.av_body(
            "lineitems",
            d2,
            rollout=canary(minCompared=1000, waitSeconds=3, insufficientTraffic="Fail"),
        )
    )
    obj = h.wait_for(
        "lineitems",
        lambda o: (
            conditions(o).get("Degraded", {}).get("reason") == "AnalysisFailed"
            and all(p.get("modelVersion") == h.world.versions[d1][0] for p in o["status"]["pods"])
        ),
        timeout=60,
        what="the rollout failed for lack of traffic and was rolled back",
    )
    assert "not enough traffic" in conditions(obj)["Degraded"]["message"]
