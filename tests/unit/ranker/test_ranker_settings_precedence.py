"""``rankswap serve`` settings: flag given > RANKSWAP_* > default, for every flag it has."""

from __future__ import annotations

import os

import pytest

from rankswap import cli
from rankswap.settings import SettingsError
from rankswap_ranker.cli import settings_from_args
from rankswap_ranker.settings import RankerSettings

# (flag, field, value from the environment, value of the flag, as the settings hold them)
FLAGS = [
    ("--public-host", "public_host", "10.0.0.1", "127.0.0.1"),
    ("--public-port", "public_port", "9000", "9100"),
    ("--admin-host", "admin_host", "10.0.0.2", "127.0.0.2"),
    ("--admin-port", "admin_port", "9001", "9101"),
    ("--workers", "workers", "3", "4"),
    ("--database-url", "database_url", "sqlite:///env.db", "sqlite:///flag.db"),
    ("--allowed-roots", "allowed_roots", "file:///env", "file:///flag"),
    ("--run-dir", "run_dir", "/env/run", "/flag/run"),
    ("--cache-dir", "cache_dir", "/env/cache", "/flag/cache"),
    ("--admin-token-file", "admin_token_file", "/env/token", "/flag/token"),
    ("--refresh-interval-s", "refresh_interval_s", "5", "7"),
]


@pytest.fixture(autouse=True)
def no_rankswap_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("RANKSWAP_")]:
        monkeypatch.delenv(name)


def _serve(*argv: str, top: tuple[str, ...] = ()) -> RankerSettings:
    return settings_from_args(cli.build_parser().parse_args([*top, "serve", *argv]))


def _as_str(value: object) -> str:
    return ",".join(value) if isinstance(value, list) else str(value).removesuffix(".0")


def test_every_serve_flag_is_a_settings_field() -> None:
    parser = cli.build_parser().parse_args(["serve"])
    flags = {k for k in vars(parser) if k not in ("command", "func", "text_logs")}
    assert flags - {"log_level", "log_format"} == {f for _, f, _, _ in FLAGS} | {
        "model_uri",
        "features_uri",
    }
    assert flags <= set(RankerSettings.model_fields)


@pytest.mark.parametrize(("flag", "field", "env", "given"), FLAGS)
def test_flag_given_beats_environment_beats_default(
    monkeypatch: pytest.MonkeyPatch, flag: str, field: str, env: str, given: str
) -> None:
    default = RankerSettings.model_fields[field].get_default(call_default_factory=True)
    assert getattr(_serve(), field) == default
    monkeypatch.setenv(f"RANKSWAP_{field.upper()}", env)
    assert _as_str(getattr(_serve(), field)) == env
    assert _as_str(getattr(_serve(flag, given), field)) == given


def test_bundle_uris_flag_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKSWAP_MODEL_URI", "file:///env/models/m/latest")
    monkeypatch.setenv("RANKSWAP_FEATURES_URI", "file:///env/features/1.0.0/latest")
    s = _serve("--model-uri", "file:///flag/models/m/latest")
    assert (s.model_uri, s.features_uri) == (
        "file:///flag/models/m/latest",
        "file:///env/features/1.0.0/latest",
    )


def test_log_level_from_the_environment_reaches_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 15 item 9: the top-level --log-level default (INFO) used to hide this variable,
    # so the chart's ranker.logLevel did nothing
    monkeypatch.setenv("RANKSWAP_LOG_LEVEL", "DEBUG")
    assert _serve().log_level == "DEBUG"
    assert _serve(top=("--log-level", "warning")).log_level == "WARNING"
    monkeypatch.delenv("RANKSWAP_LOG_LEVEL")
    assert _serve().log_level == "INFO"


def test_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _serve().log_format == "json"  # serve's default: machines read pod logs
    assert _serve("--text-logs").log_format == "text"
    assert _serve(top=("--log-format", "text")).log_format == "text"
    monkeypatch.setenv("RANKSWAP_LOG_FORMAT", "text")
    assert _serve().log_format == "text"
    assert _serve(top=("--log-format", "json")).log_format == "json"
    monkeypatch.setenv("RANKSWAP_LOG_FORMAT", "json")
    assert _serve("--text-logs").log_format == "text"


def test_settings_without_a_flag_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RANKSWAP_WARM_BUNDLES", "3")
    monkeypatch.setenv("RANKSWAP_ACCESS_LOG", "true")
    s = _serve("--workers", "1")
    assert (s.warm_bundles, s.access_log, s.workers) == (3, True, 1)


def test_an_invalid_variable_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKSWAP_WORKERS", "many")
    with pytest.raises(SettingsError, match=r"^invalid settings: RANKSWAP_WORKERS: .*'many'"):
        _serve()
    assert _serve("--workers", "2").workers == 2  # the flag given wins, the variable is unused
