"""``rankswap operator`` settings: flag given > RANKSWAP_OPERATOR_* > default."""

from __future__ import annotations

import os

import pytest

from rankswap import cli
from rankswap.settings import SettingsError
from rankswap_operator.cli import settings_from_args
from rankswap_operator.settings import OperatorSettings


@pytest.fixture(autouse=True)
def no_rankswap_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("RANKSWAP_")]:
        monkeypatch.delenv(name)


def _operator(*argv: str) -> OperatorSettings:
    return settings_from_args(cli.build_parser().parse_args(["operator", *argv]))


def test_defaults() -> None:
    s = _operator()
    assert s == OperatorSettings()
    assert (s.namespaces, s.liveness_endpoint) == ([], "http://0.0.0.0:8080/healthz")


def test_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKSWAP_OPERATOR_NAMESPACES", '["env-a", "env-b"]')
    assert _operator().namespaces == ["env-a", "env-b"]
    assert _operator("-n", "flag-a", "-n", "flag-b").namespaces == ["flag-a", "flag-b"]
    # -A is a flag given too: every namespace, whatever the variable says (it used to pass the
    # variable's namespaces on together with clusterwide=True)
    assert _operator("-A").namespaces == []


def test_liveness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKSWAP_OPERATOR_LIVENESS_ENDPOINT", "http://0.0.0.0:9000/healthz")
    assert _operator().liveness_endpoint == "http://0.0.0.0:9000/healthz"
    flag = "http://0.0.0.0:9100/healthz"
    assert _operator("--liveness", flag).liveness_endpoint == flag


@pytest.mark.parametrize(
    ("field", "value", "parsed"),
    [
        ("busy_interval_s", "0.5", 0.5),
        ("idle_interval_s", "12", 12.0),
        ("pod_timeout_s", "2", 2.0),
        ("history_limit", "4", 4),
        ("watch_server_timeout_s", "30", 30),
        ("admin_token", "t0ken", "t0ken"),
    ],
)
def test_settings_without_a_flag_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str, parsed: object
) -> None:
    assert getattr(_operator(), field) == OperatorSettings.model_fields[field].default
    monkeypatch.setenv(f"RANKSWAP_OPERATOR_{field.upper()}", value)
    assert getattr(_operator("-n", "x"), field) == parsed


def test_an_invalid_variable_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKSWAP_OPERATOR_HISTORY_LIMIT", "1000")
    with pytest.raises(SettingsError, match=r"^invalid settings: RANKSWAP_OPERATOR_HISTORY_LIMIT"):
        _operator()
