"""The top-level ``rankswap`` options follow the one rule: flag given > RANKSWAP_* > default."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from rankswap import cli
from rankswap.settings import CliSettings, SettingsError, from_flags


@pytest.fixture(autouse=True)
def no_rankswap_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No RANKSWAP_* variable of the caller's shell leaks in; the root logger is restored."""
    for name in [n for n in os.environ if n.startswith("RANKSWAP_")]:
        monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def _settings(*argv: str) -> CliSettings:
    return cli.cli_settings(cli.build_parser().parse_args([*argv, "status", "av"]))


def test_defaults() -> None:
    s = _settings()
    assert (s.log_level, s.log_format) == ("INFO", "text")


def test_environment_beats_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKSWAP_LOG_LEVEL", "warning")  # case-insensitive, like the flag
    monkeypatch.setenv("RANKSWAP_LOG_FORMAT", "json")
    s = _settings()
    assert (s.log_level, s.log_format) == ("WARNING", "json")


def test_a_flag_given_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKSWAP_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("RANKSWAP_LOG_FORMAT", "json")
    s = _settings("--log-level", "debug", "--log-format", "text")
    assert (s.log_level, s.log_format) == ("DEBUG", "text")


def test_a_flag_equal_to_the_default_still_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKSWAP_LOG_LEVEL", "ERROR")
    assert _settings("--log-level", "INFO").log_level == "INFO"


def test_main_configures_logging_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RANKSWAP_LOG_LEVEL", "ERROR")
    # `promote` without URIs fails before touching any cluster: the level is what we look at
    assert cli.main(["promote", "av"]) == 2
    assert logging.getLogger().level == logging.ERROR
    assert "nothing to promote" in capsys.readouterr().err


def test_an_invalid_variable_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RANKSWAP_LOG_LEVEL", "loud")
    assert cli.main(["promote", "av"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rankswap promote: error: invalid settings: RANKSWAP_LOG_LEVEL: ")
    assert "(got 'LOUD')" in err and "\n" not in err


def test_an_invalid_flag_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(["--log-level", "loud", "status", "av"])
    assert info.value.code == 2 and "invalid choice: 'LOUD'" in capsys.readouterr().err


def test_secrets_are_never_echoed() -> None:
    from rankswap_ranker.settings import RankerSettings

    with pytest.raises(SettingsError) as info:
        from_flags(RankerSettings, admin_token=31337, workers=0)
    message = str(info.value)
    assert "RANKSWAP_ADMIN_TOKEN: " in message and "RANKSWAP_WORKERS: " in message
    assert "31337" not in message and "(got 0)" in message and "\n" not in message
