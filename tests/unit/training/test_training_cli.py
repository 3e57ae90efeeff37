"""Bad input through the command line: one line on stderr, exit code 2, nothing published."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from rankswap import artifacts
from rankswap import cli as rankswap_cli
from rankswap.productdb import ProductDB
from rankswap_training import cli


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def _published(store: Path) -> list[Path]:
    return [p for p in store.rglob("manifest.json")]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    return root


def test_date_without_data(
    capsys: pytest.CaptureFixture[str], small_db_url: str, store: Path
) -> None:
    code, err = _run(
        capsys,
        "features",
        "build",
        "--db",
        small_db_url,
        "--as-of",
        "2020-01-01",
        "--store",
        store.as_uri(),
    )
    assert code == 2 and err.startswith("error: no expenses") and "\n" not in err
    assert _published(store) == []


def test_empty_history(capsys: pytest.CaptureFixture[str], tmp_path: Path, store: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    ProductDB(url, create=True).create_schema()
    for argv in (
        ("features", "build"),
        ("model", "train"),
    ):
        code, err = _run(
            capsys, *argv, "--db", url, "--as-of", "2026-03-31", "--store", store.as_uri()
        )
        assert code == 2 and "\n" not in err and err.startswith("error: "), err
    assert _published(store) == []


def test_unreachable_db(capsys: pytest.CaptureFixture[str], tmp_path: Path, store: Path) -> None:
    code, err = _run(
        capsys,
        "features",
        "build",
        "--db",
        f"sqlite:///{tmp_path / 'nope.db'}",
        "--as-of",
        "2026-03-31",
        "--store",
        store.as_uri(),
    )
    assert code == 2 and "does not exist" in err
    code, err = _run(
        capsys,
        "model",
        "train",
        "--db",
        "postgresql+psycopg://x@127.0.0.1:1/db",
        "--as-of",
        "2026-03-31",
        "--store",
        store.as_uri(),
    )
    assert code == 2 and "unavailable" in err and "\n" not in err


def test_bad_store(capsys: pytest.CaptureFixture[str], small_db_url: str) -> None:
    code, err = _run(
        capsys,
        "features",
        "build",
        "--db",
        small_db_url,
        "--as-of",
        "2026-03-31",
        "--store",
        "ftp://example.com/x",
    )
    assert code == 2 and "artifact store" in err and "\n" not in err


def test_model_requiring_another_schema(
    capsys: pytest.CaptureFixture[str], small_db_url: str, store: Path, tmp_path: Path
) -> None:
    code, _ = _run(
        capsys,
        "features",
        "build",
        "--db",
        small_db_url,
        "--as-of",
        "2026-03-31",
        "--store",
        store.as_uri(),
    )
    assert code == 0
    fake = tmp_path / "fake-model"
    fake.mkdir()
    (fake / "model.onnx").write_bytes(b"not really")
    artifacts.publish_artifact(
        store.as_uri(),
        "model",
        "line-items",
        date(2026, 3, 31),
        fake,
        requires_feature_schema="0.9.0",
    )
    code, err = _run(
        capsys,
        "examples",
        "--db",
        small_db_url,
        "--store",
        store.as_uri(),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert code == 2 and "0.9.0" in err and "\n" not in err


def test_bad_date_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["features", "build", "--db", "x", "--as-of", "31/03/2026", "--store", "y"])
    assert exc.value.code == 2
    assert "not a date" in capsys.readouterr().err


@pytest.fixture
def root_logger() -> Iterator[None]:
    """``rankswap.cli.main`` configures the root logger: restore it afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.mark.usefixtures("root_logger")
def test_training_commands_follow_the_settings_rule(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    small_db_url: str,
    store: Path,
) -> None:
    """Flag given > RANKSWAP_LOG_LEVEL / RANKSWAP_LOG_FORMAT > default, for training commands
    too (the top-level --log-level default used to hide the variables)."""
    for name in ("RANKSWAP_LOG_LEVEL", "RANKSWAP_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    # a date without data: the command logs its first step, then fails in one line
    argv = ["features", "build", "--db", small_db_url, "--as-of", "2020-01-01"]
    argv += ["--store", store.as_uri()]

    def stderr(*top: str) -> list[str]:
        assert rankswap_cli.main([*top, *argv]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith("error: no expenses"), lines
        return lines[:-1]

    assert any(" INFO " in line for line in stderr())  # default INFO, text
    monkeypatch.setenv("RANKSWAP_LOG_LEVEL", "WARNING")
    assert stderr() == []
    assert any(" INFO " in line for line in stderr("--log-level", "INFO"))
    monkeypatch.setenv("RANKSWAP_LOG_LEVEL", "INFO")
    monkeypatch.setenv("RANKSWAP_LOG_FORMAT", "json")
    logged = [json.loads(line) for line in stderr()]
    assert logged and {doc["level"] for doc in logged} == {"info"}
    assert not any(line.startswith("{") for line in stderr("--log-format", "text"))
