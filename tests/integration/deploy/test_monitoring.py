"""The chart's monitoring objects: PodMonitors, the PrometheusRule (checked and unit-tested by
the real promtool) and the Grafana dashboard (valid JSON, parseable PromQL that names only
metrics the ranker or operator exports)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration.deploy.layout import CHART, REPO
from tests.integration.deploy.promql import exported_series_names, metric_names

from rankswap_dev.localkube import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NS = "rs"
PROD = CHART / "values-prod.yaml"


@pytest.fixture(scope="session")
def promtool() -> Path:
    """promtool from the cache (scripts/promtool.sh builds it when missing, like kube-tools)."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "promtool.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return Path(done.stdout.strip().splitlines()[-1])


def rendered(cluster: Cluster, *args: str) -> list[dict[str, Any]]:
    out = cluster.helm("template", "rankswap", str(CHART), "--namespace", NS, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def only(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def rule_groups(cluster: Cluster) -> list[dict[str, Any]]:
    (rule,) = only(rendered(cluster, "-f", str(PROD)), "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def dashboard(cluster: Cluster, *args: str) -> dict[str, Any]:
    maps = [
        d
        for d in rendered(cluster, "-f", str(PROD), *args)
        if d["metadata"]["name"].endswith("-dashboard")
    ]
    (cm,) = maps
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == (args[-1].split("=")[1] if args else NS)
    doc: dict[str, Any] = json.loads(cm["data"]["rankswap.json"])
    return doc


def dashboard_exprs(doc: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    # Grafana's label_values(METRIC, LABEL): the selector part is PromQL.
    exprs += [
        re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["query"]["query"])
        for v in doc["templating"]["list"]
        if v["type"] == "query"
    ]
    return exprs


def run(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_monitoring_is_off_by_default_and_on_in_prod(control_plane: Cluster) -> None:
    kinds = {d["kind"] for d in rendered(control_plane, "-f", str(CHART / "values-staging.yaml"))}
    assert not kinds & {"PodMonitor", "PrometheusRule"}, kinds
    prod = rendered(control_plane, "-f", str(PROD))
    monitors = {d["metadata"]["name"]: d for d in only(prod, "PodMonitor")}
    assert set(monitors) == {"rankswap-ranker", "rankswap-operator"}
    for name, monitor in monitors.items():
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
        component = name.removeprefix("rankswap-")
        selector = monitor["spec"]["selector"]["matchLabels"]
        (deployment,) = [
            d for d in only(prod, "Deployment") if d["metadata"]["name"] == f"rankswap-{component}"
        ]
        pod = deployment["spec"]["template"]
        assert selector.items() <= pod["metadata"]["labels"].items()
        ports = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
        assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
    (operator,) = [
        d for d in only(prod, "Deployment") if d["metadata"]["name"] == "rankswap-operator"
    ]
    env = {
        e["name"]: e.get("value")
        for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["RANKSWAP_OPERATOR_METRICS_PORT"] == "9090"


def test_rules_pass_promtool_check(control_plane: Cluster, promtool: Path, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(control_plane)}))
    done = run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert "SUCCESS: 7 rules found" in done.stdout, done.stdout


def test_rules_and_dashboard_name_only_exported_metrics(control_plane: Cluster) -> None:
    exported = exported_series_names()
    assert "rankswap_ranker_worker_restarts_total" in exported
    assert "rankswap_operator_rollout_failed" in exported
    exprs = [r["expr"] for g in rule_groups(control_plane) for r in g["rules"]]
    exprs += dashboard_exprs(dashboard(control_plane))
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, (expr, names - exported)


def test_the_name_check_catches_an_unknown_metric() -> None:
    names = metric_names('sum by (pod) (rate(rankswap_ranker_requets_total{route="/v1/rank"}[5m]))')
    assert names == {"rankswap_ranker_requets_total"}
    assert not names <= exported_series_names()


def test_dashboard_is_valid_and_every_query_parses(
    control_plane: Cluster, promtool: Path, tmp_path: Path
) -> None:
    doc = dashboard(control_plane)
    assert dashboard(control_plane, "--set", "monitoring.dashboard.namespace=monitoring") == doc
    assert doc["uid"] == "rankswap" and doc["title"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in doc["templating"]["list"]}
    assert variables == {"datasource", "namespace"}
    titles = " ".join(p["title"].lower() for p in doc["panels"])
    for topic in (
        "latency",
        "throughput",
        "errors",
        "bundles per pod",
        "feature age",
        "swaps",
        "rollbacks",
    ):
        assert topic in titles, topic
    for panel in doc["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        assert panel["targets"], panel["title"]
    # Grafana's variables replaced as Grafana would; promtool parses each query.
    exprs = [
        e.replace("$__rate_interval", "5m").replace("$namespace", NS) for e in dashboard_exprs(doc)
    ]
    rules = [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]
    (tmp_path / "dash.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dash", "rules": rules}]})
    )
    run(promtool, "check", "rules", "dash.yaml", cwd=tmp_path)


def _alert(name: str, labels: dict[str, str], summary: str, description: str) -> dict[str, Any]:
    return {
        "exp_labels": labels,
        "exp_annotations": {"summary": summary, "description": description},
    }


RANKER = f'job="rankswap-ranker", namespace="{NS}"'
MIXED_BUNDLES = _alert(
    "RankswapMixedBundles",
    {"severity": "warning", "namespace": NS},
    f"Ranker pods in {NS} serve 2 different bundles",
    "Pods have served different bundles for longer than a rollout should take (30 min): a "
    "stuck canary or tenant cohort, a pod the operator cannot reach, or a suspended resource.",
)
OPERATOR = f'job="rankswap-operator", namespace="{NS}", artifactversion="lineitems"'


def rule_tests() -> list[dict[str, Any]]:
    """Input series and the alerts expected from them, for every rule (prod thresholds)."""
    return [
        {
            "name": "rollout failed",
            "interval": "1m",
            "input_series": [
                {"series": f"rankswap_operator_rollout_failed{{{OPERATOR}}}", "values": "0 0 1x10"},
            ],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "RankswapRolloutFailed", "exp_alerts": []},
                {
                    "eval_time": "4m",
                    "alertname": "RankswapRolloutFailed",
                    "exp_alerts": [
                        _alert(
                            "RankswapRolloutFailed",
                            {
                                "severity": "critical",
                                "namespace": NS,
                                "artifactversion": "lineitems",
                            },
                            f"Rollout of ArtifactVersion {NS}/lineitems failed",
                            "The last rollout failed (pods were returned to the last good bundle "
                            "when autoRollback is on). See kubectl rankswap status lineitems -n "
                            f"{NS} and its Events.",
                        )
                    ],
                },
            ],
        },
        {
            "name": "degraded, not ready",
            "interval": "1m",
            "input_series": [
                {
                    "series": f'rankswap_operator_condition{{{OPERATOR}, type="Degraded"}}',
                    "values": "1x10",
                },
                {
                    "series": f'rankswap_operator_condition{{{OPERATOR}, type="Ready"}}',
                    "values": "0x10",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "RankswapDegraded", "exp_alerts": []},
                {
                    "eval_time": "6m",
                    "alertname": "RankswapDegraded",
                    "exp_alerts": [
                        _alert(
                            "RankswapDegraded",
                            {
                                "severity": "warning",
                                "namespace": NS,
                                "artifactversion": "lineitems",
                            },
                            f"ArtifactVersion {NS}/lineitems is Degraded",
                            "Condition Degraded has been True for 5 minutes (invalid spec, store "
                            "unavailable, missing admin token, failed or unreachable pods). The "
                            "condition's reason says which.",
                        )
                    ],
                },
            ],
        },
        {
            "name": "pods on different bundles for longer than a rollout",
            "interval": "1m",
            "input_series": [
                {
                    "series": f'rankswap_ranker_active_bundle{{{RANKER}, pod="r-a", bundle_id="m1+f1"}}',
                    "values": "2x60",
                },
                {
                    "series": f'rankswap_ranker_active_bundle{{{RANKER}, pod="r-b", bundle_id="m1+f1"}}',
                    "values": "2x60",
                },
                {
                    "series": f'rankswap_ranker_active_bundle{{{RANKER}, pod="r-c", bundle_id="m2+f1"}}',
                    "values": "_x9 2x50",
                },
                # a bundle that no worker serves any more (gauge 0) does not count
                {
                    "series": f'rankswap_ranker_active_bundle{{{RANKER}, pod="r-c", bundle_id="m0+f0"}}',
                    "values": "0x60",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "RankswapMixedBundles", "exp_alerts": []},
                {"eval_time": "35m", "alertname": "RankswapMixedBundles", "exp_alerts": []},
                {
                    "eval_time": "45m",
                    "alertname": "RankswapMixedBundles",
                    "exp_alerts": [MIXED_BUNDLES],
                },
            ],
        },
        {
            # Every pod has the same active bundle, but a TenantCanary cohort stays on m2.
            "name": "a tenant cohort left on its bundle for longer than a rollout",
            "interval": "1m",
            "input_series": [
                *(
                    {
                        "series": f'rankswap_ranker_active_bundle{{{RANKER}, pod="{p}", bundle_id="m1+f1"}}',
                        "values": "2x60",
                    }
                    for p in ("r-a", "r-b")
                ),
                *(
                    {
                        "series": f'rankswap_ranker_cohort_bundle{{{RANKER}, pod="{p}", bundle_id="m2+f1"}}',
                        "values": "_x9 2x50",
                    }
                    for p in ("r-a", "r-b")
                ),
            ],
            "alert_rule_test": [
                {"eval_time": "35m", "alertname": "RankswapMixedBundles", "exp_alerts": []},
                {
                    "eval_time": "45m",
                    "alertname": "RankswapMixedBundles",
                    "exp_alerts": [MIXED_BUNDLES],
                },
            ],
        },
        {
            # A cohort that ended (gauge back to 0) does not count.
            "name": "a tenant cohort that ended",
            "interval": "1m",
            "input_series": [
                {
                    "series": f'rankswap_ranker_active_bundle{{{RANKER}, pod="r-a", bundle_id="m1+f1"}}',
                    "values": "1x60",
                },
                {
                    "series": f'rankswap_ranker_cohort_bundle{{{RANKER}, pod="r-a", bundle_id="m2+f1"}}',
                    "values": "1x5 0x55",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "45m", "alertname": "RankswapMixedBundles", "exp_alerts": []},
            ],
        },
        {
            "name": "features older than their refresh",
            "interval": "1m",
            "input_series": [
                {
                    "series": f'rankswap_ranker_feature_age_seconds{{{RANKER}, pod="r-a"}}',
                    "values": "107400+60x30",
                },
                {
                    "series": f'rankswap_ranker_feature_age_seconds{{{RANKER}, pod="r-b"}}',
                    "values": "3600+60x30",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": "RankswapFeaturesStale", "exp_alerts": []},
                {
                    "eval_time": "25m",
                    "alertname": "RankswapFeaturesStale",
                    "exp_alerts": [
                        _alert(
                            "RankswapFeaturesStale",
                            {"severity": "warning", "namespace": NS, "pod": "r-a"},
                            "Pod r-a serves features older than 30 h",
                            "The active feature tables were built 1d 6h 15m 0s ago: the daily "
                            "feature pipeline did not publish, or the ArtifactVersion still "
                            "points at an old dated URI.",
                        )
                    ],
                },
            ],
        },
        {
            "name": "5xx rate",
            "interval": "1m",
            "input_series": [
                {
                    "series": f'rankswap_ranker_requests_total{{{RANKER}, pod="r-a", route="/v1/rank", status="200"}}',
                    "values": "0+95x20",
                },
                {
                    "series": f'rankswap_ranker_requests_total{{{RANKER}, pod="r-a", route="/v1/rank", status="503"}}',
                    "values": "0+5x20",
                },
                {
                    "series": f'rankswap_ranker_requests_total{{{RANKER}, pod="r-a", route="/healthz", status="503"}}',
                    "values": "0+500x20",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "RankswapHighErrorRate", "exp_alerts": []},
                {
                    "eval_time": "12m",
                    "alertname": "RankswapHighErrorRate",
                    "exp_alerts": [
                        _alert(
                            "RankswapHighErrorRate",
                            {"severity": "critical", "namespace": NS},
                            f"5% of /v1/rank answers in {NS} are 5xx",
                            "More than 0.01 of rank requests fail (503 = no bundle or the "
                            "product DB is unavailable). Check the ranker logs and the database.",
                        )
                    ],
                },
            ],
        },
        {
            "name": "p99 latency",
            "interval": "1m",
            "input_series": [
                {
                    "series": f'rankswap_ranker_request_duration_seconds_bucket{{{RANKER}, pod="r-a", route="/v1/rank", le="0.1"}}',
                    "values": "0+90x30",
                },
                {
                    "series": f'rankswap_ranker_request_duration_seconds_bucket{{{RANKER}, pod="r-a", route="/v1/rank", le="0.25"}}',
                    "values": "0+100x30",
                },
                {
                    "series": f'rankswap_ranker_request_duration_seconds_bucket{{{RANKER}, pod="r-a", route="/v1/rank", le="+Inf"}}',
                    "values": "0+100x30",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "8m", "alertname": "RankswapHighLatency", "exp_alerts": []},
                {
                    "eval_time": "20m",
                    "alertname": "RankswapHighLatency",
                    "exp_alerts": [
                        _alert(
                            "RankswapHighLatency",
                            {"severity": "warning", "namespace": NS},
                            f"p99 of /v1/rank in {NS} is 235ms",
                            "The 99th percentile of rank latency is above 0.1 s: CPU saturation "
                            "(see the HPA), very large tenants, or a slow product DB.",
                        )
                    ],
                },
            ],
        },
        {
            "name": "worker restarts",
            "interval": "1m",
            "input_series": [
                {
                    "series": f'rankswap_ranker_worker_restarts_total{{{RANKER}, pod="r-a"}}',
                    "values": "0x10 1 2 3 4x60",
                },
                {
                    "series": f'rankswap_ranker_worker_restarts_total{{{RANKER}, pod="r-b"}}',
                    "values": "0x10 1x60",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "RankswapWorkerRestarts", "exp_alerts": []},
                {
                    "eval_time": "30m",
                    "alertname": "RankswapWorkerRestarts",
                    "exp_alerts": [
                        _alert(
                            "RankswapWorkerRestarts",
                            {"severity": "warning", "namespace": NS, "pod": "r-a"},
                            "Pod r-a restarted 4 workers in an hour",
                            "Worker processes keep dying (the pod stays up): usually the memory "
                            "limit (OOM kill of a worker) or a crash in a bundle. Check the pod's "
                            'logs for "worker died".',
                        )
                    ],
                },
                {"eval_time": "75m", "alertname": "RankswapWorkerRestarts", "exp_alerts": []},
            ],
        },
    ]


def test_rules_fire_on_their_conditions_only(
    control_plane: Cluster, promtool: Path, tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(control_plane)}))
    tests = rule_tests()
    alerts = {r["alert"] for g in rule_groups(control_plane) for r in g["rules"]}
    assert {t["alertname"] for c in tests for t in c["alert_rule_test"]} == alerts
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    done = run(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert "SUCCESS" in done.stdout, done.stdout
