"""The CRD's schema refuses invalid ArtifactVersions with messages a user can act on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rankswap_dev.localkube import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

GOOD: dict[str, Any] = {
    "apiVersion": "rankswap.io/v1alpha1",
    "kind": "ArtifactVersion",
    "metadata": {"name": "sample"},
    "spec": {
        "selector": {"matchLabels": {"app": "ranker"}},
        "model": {"uri": "s3://my-bucket/prod/models/line-items/2026-05-01"},
        "features": {"uri": "s3://my-bucket/prod/features/1.0.0/latest"},
    },
}


def with_spec(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(GOOD))
    body["spec"].update(changes)
    return body


def apply(cluster: Cluster, namespace: str, body: dict[str, Any]) -> tuple[int, str]:
    done = cluster.kubectl(
        "apply", "-n", namespace, "--dry-run=server", "-f", "-", input=json.dumps(body), check=False
    )
    return done.returncode, done.stderr


def test_valid_resource_is_accepted_and_defaulted(
    control_plane: Cluster, namespace: str, crd_installed: None
) -> None:
    done = control_plane.kubectl(
        "apply",
        "-n",
        namespace,
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(GOOD),
    )
    spec = json.loads(done.stdout)["spec"]
    assert spec["rollout"] == {
        "strategy": "AllAtOnce",
        "canaryPods": 1,
        "canaryVerifySeconds": 10,
        "batchSize": 1000,
        "podTimeoutSeconds": 120,
        "instantRollback": True,
    }
    assert spec["autoRollback"] is True and spec["admin"]["port"] == 8081


def test_analysis_is_defaulted(control_plane: Cluster, namespace: str, crd_installed: None) -> None:
    body = with_spec(rollout={"strategy": "Canary", "analysis": {"minTopKOverlap": 0.6}})
    done = control_plane.kubectl(
        "apply", "-n", namespace, "--dry-run=server", "-o", "json", "-f", "-",
        input=json.dumps(body),
    )  # fmt: skip
    analysis = json.loads(done.stdout)["spec"]["rollout"]["analysis"]
    assert analysis == {
        "minCompared": 100,
        "waitSeconds": 300,
        "insufficientTraffic": "Fail",
        "minTopKOverlap": 0.6,
    }


def test_a_tenant_canary_is_accepted(
    control_plane: Cluster, namespace: str, crd_installed: None
) -> None:
    steps = [{"tenants": ["t0001", "t0002"]}, {"percent": 10}, {"percent": 50}]
    body = with_spec(
        rollout={"strategy": "TenantCanary", "steps": steps, "analysis": {"maxPSI": 0.5}}
    )
    done = control_plane.kubectl(
        "apply", "-n", namespace, "--dry-run=server", "-o", "json", "-f", "-",
        input=json.dumps(body),
    )  # fmt: skip
    assert json.loads(done.stdout)["spec"]["rollout"]["steps"] == steps


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (with_spec(model={"uri": "http://example.com/model.onnx"}), "spec.model.uri"),
        (
            with_spec(model={"uri": "s3://my-bucket/prod/models/line-items/yesterday"}),
            "spec.model.uri",
        ),
        (
            with_spec(features={"uri": "s3://my-bucket/prod/models/line-items/latest"}),
            "spec.features.uri",
        ),
        (with_spec(selector={}), "selector must have matchLabels or matchExpressions"),
        (with_spec(rollout={"strategy": "BlueGreen"}), "spec.rollout.strategy"),
        (with_spec(rollout={"strategy": "Canary", "canaryPods": 0}), "spec.rollout.canaryPods"),
        (with_spec(admin={"port": 70000}), "spec.admin.port"),
        (
            with_spec(rollout={"analysis": {"maxPSI": 0.2}}),
            "rollout.analysis judges canary pods or a tenant cohort: it needs strategy Canary "
            "or TenantCanary",
        ),
        (
            with_spec(rollout={"strategy": "TenantCanary"}),
            "strategy TenantCanary needs rollout.steps",
        ),
        (
            with_spec(rollout={"strategy": "Canary", "steps": [{"percent": 5}]}),
            "rollout.steps are cohort steps: they need strategy TenantCanary",
        ),
        (
            with_spec(rollout={"strategy": "TenantCanary", "steps": [{"percent": 0}]}),
            "a TenantCanary step needs tenants or a percent above 0",
        ),
        (
            with_spec(rollout={"strategy": "TenantCanary", "steps": [{"tenants": ["bad id"]}]}),
            "spec.rollout.steps[0].tenants[0]",
        ),
        (
            with_spec(rollout={"strategy": "TenantCanary", "steps": [{"percent": 101}]}),
            "spec.rollout.steps[0].percent",
        ),
        (
            with_spec(rollout={"strategy": "TenantCanary", "steps": [{"percent": 1}] * 11}),
            "spec.rollout.steps",
        ),
        (
            with_spec(rollout={"strategy": "Canary", "analysis": {"minCompared": 10}}),
            "rollout.analysis needs at least one threshold",
        ),
        (
            with_spec(rollout={"strategy": "Canary", "analysis": {"minTop1Agreement": 1.5}}),
            "spec.rollout.analysis.minTop1Agreement",
        ),
        (
            with_spec(
                rollout={
                    "strategy": "Canary",
                    "analysis": {"maxPSI": 0.2, "insufficientTraffic": "Ignore"},
                }
            ),
            "spec.rollout.analysis.insufficientTraffic",
        ),
        ({**GOOD, "spec": {"selector": {"matchLabels": {"a": "b"}}}}, "spec.model: Required value"),
    ],
)
def test_invalid_resources_are_refused(
    control_plane: Cluster, namespace: str, crd_installed: None, body: dict[str, Any], says: str
) -> None:
    code, err = apply(control_plane, namespace, body)
    assert code != 0
    assert says in err, err
