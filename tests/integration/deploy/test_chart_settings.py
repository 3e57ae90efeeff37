"""The chart's settings reach the processes (issue 15 item 9).

The chart is rendered with ``helm template``; for each component the test takes the
container's environment (its ``env``, the ConfigMaps of its ``envFrom``) and its ``args`` (the
image's entrypoint is ``rankswap``), checks that every ``RANKSWAP_*`` variable is a field of
that component's settings class, then builds the settings exactly as the process does (the
real parser, the real ``settings_from_args``) in that environment and compares them with the
values the chart was given.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration.deploy.layout import CHART, ENVIRONMENTS

from rankswap import cli
from rankswap.settings import CliSettings
from rankswap_dev.localkube import ensure_binaries
from rankswap_operator import cli as operator_cli
from rankswap_operator.settings import OperatorSettings
from rankswap_ranker import cli as ranker_cli
from rankswap_ranker.settings import RankerSettings
from rankswap_ranker.tracing import TracingConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECRET = "from-a-secret"  # stands for a value the kubelet reads from a Secret
SETS = {
    "ranker.logLevel": "DEBUG",
    "ranker.workers": "3",
    "ranker.refreshIntervalSeconds": "17",
    "ranker.warmBundles": "2",
    "ranker.accessLog": "true",
    "ranker.ports.public": "9080",
    "ranker.ports.admin": "9081",
    "operator.logLevel": "WARNING",
    "operator.busyIntervalSeconds": "2",
    "operator.podTimeoutSeconds": "4",
    "operator.historyLimit": "5",
    "operator.healthPort": "9090",
    "operator.watchNamespaces": "{team-a,team-b}",
}


def _render(tmp_path: Path, env: str, *sets: str) -> list[dict[str, Any]]:
    helm = ensure_binaries("clients", quiet=True) / "helm"
    dirs = {k: str(tmp_path / k.lower()) for k in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    args = [str(helm), "template", "rankswap", str(CHART), "--namespace", "rankswap"]
    args += ["-f", str(CHART / f"values-{env}.yaml")]
    for item in sets:
        args += ["--set", item]
    done = subprocess.run(
        args,
        env={**os.environ, **dirs, "XDG_DATA_HOME": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (deployment,) = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["labels"].get("app.kubernetes.io/component") == name
    ]
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == name]
    return container


def _environment(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """What the kubelet would put into the container's environment (Secrets as SECRET)."""
    maps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    out: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            out.update(maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        out[var["name"]] = var.get("value", SECRET)
    return out


def _fields(env: dict[str, str], prefix: str) -> set[str]:
    return {n.removeprefix(prefix).lower() for n in env if n.startswith(prefix)}


def _process_settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: list[str]) -> Any:
    """Parse the container's args in its environment, as ``rankswap`` would."""
    for name in [n for n in os.environ if n.startswith("RANKSWAP_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return cli.build_parser().parse_args(args)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_variable_the_chart_sets_is_a_setting(tmp_path: Path, env: str) -> None:
    docs = _render(tmp_path, env)
    ranker = _environment(docs, _container(docs, "ranker"))
    operator = _environment(docs, _container(docs, "operator"))
    top = set(CliSettings.model_fields)
    assert _fields(ranker, "RANKSWAP_") <= set(RankerSettings.model_fields) | top, ranker
    assert "log_level" in _fields(ranker, "RANKSWAP_")
    own = {n for n in operator if n.startswith("RANKSWAP_OPERATOR_")}
    assert _fields(operator, "RANKSWAP_OPERATOR_") <= set(OperatorSettings.model_fields), own
    assert _fields({n: v for n, v in operator.items() if n not in own}, "RANKSWAP_") <= top
    assert {n for n in ranker | operator if not n.startswith("RANKSWAP_")} <= {
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_chart_values_reach_the_ranker_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    docs = _render(tmp_path, env, *(f"{k}={v}" for k, v in SETS.items()))
    container = _container(docs, "ranker")
    args = _process_settings(monkeypatch, _environment(docs, container), container["args"])
    s = ranker_cli.settings_from_args(args)
    # ranker.logLevel used to stop at RANKSWAP_LOG_LEVEL: the top-level --log-level default won
    assert s.log_level == "DEBUG" and cli.cli_settings(args).log_level == "DEBUG"
    assert (s.workers, s.refresh_interval_s, s.warm_bundles, s.access_log) == (3, 17.0, 2, True)
    assert (s.public_port, s.admin_port) == (9080, 9081)
    assert s.log_format == "json"
    assert (s.run_dir, s.cache_dir) == (
        Path("/var/lib/rankswap/run"),
        Path("/var/lib/rankswap/cache"),
    )
    assert s.admin_token_file == Path("/etc/rankswap/admin/token")
    assert s.database_url == SECRET
    assert s.allowed_roots and all(root.startswith("s3://") for root in s.allowed_roots)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_chart_values_reach_the_operator_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    docs = _render(tmp_path, env, *(f"{k}={v}" for k, v in SETS.items()))
    container = _container(docs, "operator")
    args = _process_settings(monkeypatch, _environment(docs, container), container["args"])
    s = operator_cli.settings_from_args(args)
    assert cli.cli_settings(args).log_level == "WARNING"
    assert cli.cli_settings(args).log_format == "json"
    assert (s.busy_interval_s, s.pod_timeout_s, s.history_limit) == (2.0, 4.0, 5)
    assert s.namespaces == ["team-a", "team-b"]
    assert s.liveness_endpoint == "http://0.0.0.0:9090/healthz"
    assert container["ports"][0]["containerPort"] == 9090


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_ranker_tracing_values_become_the_otel_variables_the_ranker_reads(
    tmp_path: Path, env: str
) -> None:
    """Off in every environment file (no OTEL_* variable at all); on, the ranker's own reader
    of the variables gets the chart's values, and each span names its pod."""
    container = _container(_render(tmp_path, env), "ranker")
    assert not [v for v in container["env"] if v["name"].startswith("OTEL_")]
    docs = _render(
        tmp_path,
        env,
        "ranker.tracing.enabled=true",
        "ranker.tracing.endpoint=http://otel-collector.observability:4318",
        "ranker.tracing.samplerArg=0.2",
        "ranker.extraEnv[0].name=OTEL_EXPORTER_OTLP_HEADERS",
        "ranker.extraEnv[0].valueFrom.secretKeyRef.name=otel-auth",
        "ranker.extraEnv[0].valueFrom.secretKeyRef.key=headers",
    )
    container = _container(docs, "ranker")
    environment = _environment(docs, container)
    assert TracingConfig.from_env(environment) == TracingConfig(
        ("otlp",),
        "http://otel-collector.observability:4318/v1/traces",
        "parentbased_traceidratio",
        0.2,
        "rankswap-ranker",
    )
    assert environment["OTEL_EXPORTER_OTLP_HEADERS"] == SECRET
    assert environment["OTEL_RESOURCE_ATTRIBUTES"] == (
        "k8s.pod.name=$(K8S_POD_NAME),k8s.namespace.name=rankswap"
    )
    names = [v["name"] for v in container["env"]]
    # $(K8S_POD_NAME) is expanded by the kubelet only from variables defined before it
    assert names.index("K8S_POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")
    pod_name = next(v for v in container["env"] if v["name"] == "K8S_POD_NAME")
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
