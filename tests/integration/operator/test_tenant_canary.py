"""TenantCanary end to end: real API server, ranker pods, operator, live traffic.

Every pod serves the new bundle to a cohort of tenants and the last good one to the others;
each step is judged on the cohort's own requests (``RANKSWAP_SHADOW_SAMPLE_RATE=1``, so little
traffic is needed); the load generator runs throughout and no request may fail.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from tests.integration.operator.conftest import Harness
from tests.integration.operator.test_analysis import ANALYSIS, SHADOW, analysis_of
from tests.integration.operator.test_rollouts import conditions, reasons

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def busiest_tenant(h: Harness) -> str:
    """The tenant with the most sample requests: the first step's cohort gets traffic."""
    counts = Counter(str(r["tenant_id"]) for r in h.world.sample_requests)
    return counts.most_common(1)[0][0]


def tenant_canary(steps: list[dict[str, Any]], **analysis: Any) -> dict[str, Any]:
    return {
        "strategy": "TenantCanary",
        "canaryVerifySeconds": 1,
        "steps": steps,
        "analysis": {**ANALYSIS, **analysis},
    }


def canary_of(obj: dict[str, Any]) -> dict[str, Any]:
    return ((obj.get("status") or {}).get("rollout") or {}).get("tenantCanary") or {}


def test_a_good_model_widens_cohort_by_cohort_to_every_tenant(harness: Harness) -> None:
    h = harness
    d1, d2 = h.world.dates
    first = busiest_tenant(h)
    load = h.serving(3, d1, env=SHADOW)
    steps: list[dict[str, Any]] = [{"tenants": [first]}, {"percent": 50}, {"percent": 100}]
    h.apply(h.av_body("lineitems", d2, rollout=tenant_canary(steps)))
    # The first step: every pod serves the new bundle to the one tenant, the old to the rest.
    during = h.wait_for(
        "lineitems",
        lambda o: (
            canary_of(o).get("current") == "1/3"
            and {p.get("state") for p in o["status"]["pods"]} == {"Cohort"}
        ),
        timeout=90,
        what="every pod serving the first cohort",
    )
    assert canary_of(during)["cohort"] == f"1 tenant(s) [{first}]"
    assert all(p.get("modelVersion") == h.world.versions[d1][0] for p in during["status"]["pods"])
    wide = h.cluster.kubectl("get", "av", "lineitems", "-n", h.namespace, "-o", "wide").stdout
    assert "STEP" in wide.splitlines()[0] and "COHORT" in wide.splitlines()[0], wide

    obj = h.wait_ready_on("lineitems", d2, pods=3, timeout=200)
    load.stop()
    assert load.failures == [], load.failures[:5]
    st = obj["status"]
    assert canary_of(obj)["current"] == "done"
    assert st["history"][-1]["outcome"] == "Succeeded"
    assert analysis_of(obj)["verdict"] == "Passed", analysis_of(obj)
    events = [reason for _, reason, _ in h.events("lineitems")]
    assert events.count("CohortServing") == 3 and events.count("CohortStepPassed") == 3, events
    assert events.count("AnalysisPassed") == 3, "each step judged on its own"
    assert st["lastGood"]["modelVersion"] == h.world.versions[d2][0]
    new = h.world.versions[d2]
    assert all(new in seen for seen in load.versions_by_tenant.values())


def test_a_bad_model_fails_at_the_first_step_and_only_the_cohort_ever_saw_it(
    harness: Harness,
) -> None:
    h = harness
    _, d2 = h.world.dates
    first = busiest_tenant(h)
    load = h.serving(3, d2, env=SHADOW)
    steps: list[dict[str, Any]] = [{"tenants": [first]}, {"percent": 50}]
    h.apply(h.av_body("lineitems", h.world.permuted, rollout=tenant_canary(steps)))
    h.cluster.kubectl(
        "wait",
        "--for=jsonpath={.status.rollout.analysis.verdict}=Failed",
        "av/lineitems",
        "-n",
        h.namespace,
        "--timeout=150s",
    )
    good = h.world.versions[d2]
    obj = h.wait_for(
        "lineitems",
        lambda o: (
            conditions(o).get("Degraded", {}).get("reason") == "AnalysisFailed"
            and all(
                (p.get("modelVersion"), p.get("featuresVersion")) == good
                and p.get("state") == "Updated"
                for p in o["status"]["pods"]
            )
        ),
        timeout=60,
        what="analysis failed and every pod back on the last good bundle for every tenant",
    )
    load.stop()
    assert load.failures == [], load.failures[:5]
    message = conditions(obj)["Degraded"]["message"]
    assert message.startswith(f"step 1/2 (1 tenant(s) [{first}])"), message
    assert "top-1 agreement" in message and "< min 0.5" in message, message
    assert canary_of(obj)["current"] == "1/2", "it never widened"
    assert obj["status"]["history"][-1]["outcome"] == "RolledBack"
    assert {"CohortServing", "AnalysisFailed", "RolloutFailed", "RollingBack"} <= reasons(
        h, "lineitems"
    )
    assert "CohortStepPassed" not in reasons(h, "lineitems")
    others = {t: seen for t, seen in load.versions_by_tenant.items() if t != first}
    assert others, "the load reached tenants outside the cohort"
    assert all(seen == {good} for seen in others.values()), others
    assert load.versions_by_tenant[first] - {good}, "the cohort's tenant was served the new model"
