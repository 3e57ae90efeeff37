"""The Helm chart: lint, the CRD copy, the values schema, and every environment's objects
validated by the real API server (server-side dry run)."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from tests.integration.deploy.layout import CHART, CRD, ENVIRONMENTS, admin_port_peers, matches

from rankswap_dev.localkube import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def render(
    cluster: Cluster, namespace: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return cluster.helm(
        "template", "rankswap", str(CHART), "--namespace", namespace, *args, check=check
    )


def test_chart_crd_is_the_manifests_crd() -> None:
    chart_crd = CHART / "crds" / CRD.name
    assert [p.name for p in (CHART / "crds").iterdir()] == [CRD.name]
    assert chart_crd.read_text() == CRD.read_text(), (
        f"{chart_crd} differs from the single source {CRD}: cp {CRD} {chart_crd}"
    )


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_lint_strict(control_plane: Cluster, env: str) -> None:
    done = control_plane.helm(
        "lint", "--strict", str(CHART), "-f", str(CHART / f"values-{env}.yaml")
    )
    assert "0 chart(s) failed" in done.stdout, done.stdout


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_is_valid_for_the_api_server(
    control_plane: Cluster, namespace: str, crd_installed: None, monitoring_crds: None, env: str
) -> None:
    rendered = render(control_plane, namespace, "-f", str(CHART / f"values-{env}.yaml")).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = {d["kind"] for d in docs}
    assert {
        "ClusterRole",
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "Pod",  # the helm test hook
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ArtifactVersion",
    } <= kinds, kinds
    done = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == len(docs) and all("(server dry run)" in x for x in lines), done.stdout
    # Selectors never carry the chart version (it would make every upgrade a new selector).
    for doc in docs:
        if doc["kind"] == "Deployment":
            assert set(doc["spec"]["selector"]["matchLabels"]) == {
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
            }
            annotations = doc["spec"]["template"]["metadata"]["annotations"]
            assert "checksum/store" in annotations
    # The admin port admits the operator's pods in the release namespace, and nothing else.
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    (peer,) = admin_port_peers(policy)
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    (operator,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator")
    ]
    operator_labels = operator["spec"]["template"]["metadata"]["labels"]
    assert matches(peer["podSelector"]["matchLabels"], operator_labels)
    (ranker,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-ranker")
    ]
    assert not matches(
        peer["podSelector"]["matchLabels"], ranker["spec"]["template"]["metadata"]["labels"]
    )


def test_configuration_change_rolls_the_pods(control_plane: Cluster, namespace: str) -> None:
    values = str(CHART / "values-staging.yaml")

    def pod_annotations(*extra: str) -> dict[str, str]:
        docs = yaml.safe_load_all(render(control_plane, namespace, "-f", values, *extra).stdout)
        ranker = next(
            d
            for d in docs
            if d and d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-ranker")
        )
        return dict(ranker["spec"]["template"]["metadata"]["annotations"])

    before = pod_annotations()
    assert pod_annotations() == before  # stable when nothing changes
    assert (
        pod_annotations("--set", "ranker.warmBundles=2")["checksum/config"]
        != before["checksum/config"]
    )
    assert (
        pod_annotations("--set", "store.region=eu-west-1")["checksum/store"]
        != before["checksum/store"]
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--set", "ranker.replica=3"], "additional properties 'replica' not allowed"),
        (["--set", "bogus=1"], "additional properties 'bogus' not allowed"),
        (["--set", "ranker.replicas=three"], "/ranker/replicas"),
        (["--set-json", 'operator.watchNamespaces="ns"'], "/operator/watchNamespaces"),
        (
            ["--set", "artifactVersion.rollout.strategy=BlueGreen"],
            "/artifactVersion/rollout/strategy",
        ),
        (["--set", "ranker.ports.admin=70000"], "/ranker/ports/admin"),
        (
            ["--set", "artifactVersion.model.uri=http://example.com/m.onnx"],
            "/artifactVersion/model/uri",
        ),
        (["--set", "ranker.database.secretName="], "ranker.database.secretName is required"),
        (["--set", "ranker.tracing.enabled=true"], "/ranker/tracing/endpoint"),
        (["--set", "ranker.tracing.endpoint=otel:4318"], "/ranker/tracing/endpoint"),
        (["--set", "ranker.tracing.samplerArg=1.5"], "/ranker/tracing/samplerArg"),
        (["--set", "ranker.tracing.sampler=xray"], "/ranker/tracing/sampler"),
        (["--set", "ranker.drainSeconds=-1"], "/ranker/drainSeconds"),
        (
            ["--set", "ranker.terminationGracePeriodSeconds=9"],
            "must be at least preStopSleepSeconds + drainSeconds + 5 = 12",
        ),
    ],
)
def test_values_schema_refuses_bad_values(
    control_plane: Cluster, namespace: str, args: list[str], says: str
) -> None:
    done = render(
        control_plane, namespace, "-f", str(CHART / "values-staging.yaml"), *args, check=False
    )
    assert done.returncode != 0
    assert says in done.stderr, done.stderr


def test_operator_watching_namespaces_gets_no_cluster_wide_binding(
    control_plane: Cluster, namespace: str
) -> None:
    rendered = render(
        control_plane,
        namespace,
        "-f",
        str(CHART / "values-staging.yaml"),
        "--set-json",
        f"operator.watchNamespaces={json.dumps([namespace])}",
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert not [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    operator = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator")
    )
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--namespace={namespace}" in args and "--all-namespaces" not in args


@pytest.mark.parametrize("av_name", [None, "lineitems-prod"])
def test_rankers_mount_the_start_up_configmap_the_operator_may_write(
    control_plane: Cluster, namespace: str, av_name: str | None
) -> None:
    """Pods that start while the operator is down: the ranker Deployment mounts the
    ArtifactVersion's start-up ConfigMap (optional), and the operator may keep it."""
    from rankswap.podstate import STARTUP_FILE
    from rankswap_operator.startup import configmap_name

    extra = ["--set", f"artifactVersion.name={av_name}"] if av_name else []
    rendered = render(
        control_plane, namespace, "-f", str(CHART / "values-staging.yaml"), *extra
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    (av,) = [d for d in docs if d["kind"] == "ArtifactVersion"]
    (ranker,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-ranker")
    ]
    pod = ranker["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["startup"]["configMap"] == {
        "name": configmap_name(av["metadata"]["name"]),
        "optional": True,
        "defaultMode": 0o444,
    }
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "startup"]
    assert mount["readOnly"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RANKSWAP_STARTUP_FILE"] == f"{mount['mountPath']}/{STARTUP_FILE}"
    assert pod["automountServiceAccountToken"] is False  # the pods need no API access for it
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    rules = [r for r in role["rules"] if "configmaps" in r["resources"]]
    assert rules == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"]}
    ]
