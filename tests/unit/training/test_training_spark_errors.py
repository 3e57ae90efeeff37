"""``features build --engine spark`` without pyspark or Java: one line saying what to install,
exit code 2, nothing read or published (no JVM is started here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rankswap_training import cli, sparkengine
from rankswap_training.errors import EngineUnavailable


def _build(tmp_path: Path, *extra: str) -> list[str]:
    # a product DB that does not exist: the engine check must fail before anything is read
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    store = (tmp_path / "store").as_uri()
    return ["features", "build", "--db", url, "--as-of", "2026-03-01", "--store", store, *extra]


def _fake_java(home: Path, banner: str) -> Path:
    """A ``bin/java`` whose ``-version`` prints ``banner`` on stderr, as a JDK does."""
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{banner}' >&2\n", encoding="utf-8")
    java.chmod(0o755)
    return home


def test_java_home_without_java(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "jdk"
    empty.mkdir()
    monkeypatch.setenv("JAVA_HOME", str(empty))
    assert cli.main(_build(tmp_path, "--engine", "spark")) == cli.EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert f"JAVA_HOME={empty} has no bin/java" in err and "make java" in err
    assert not (tmp_path / "store").exists() and not (tmp_path / "absent.db").exists()


def test_java_too_old(tmp_path: Path) -> None:
    home = _fake_java(tmp_path / "jdk8", 'openjdk version "1.8.0_402"')
    with pytest.raises(EngineUnavailable, match=r"is Java 8; Spark 4 needs Java 17\+"):
        sparkengine.java_home({"JAVA_HOME": str(home)})
    home = _fake_java(tmp_path / "jdk11", 'openjdk version "11.0.22" 2024-01-16')
    with pytest.raises(EngineUnavailable, match="is Java 11"):
        sparkengine.java_home({"JAVA_HOME": str(home)})


def test_java_without_a_version(tmp_path: Path) -> None:
    home = _fake_java(tmp_path / "odd", "no idea")
    with pytest.raises(EngineUnavailable, match="did not report a version"):
        sparkengine.java_home({"JAVA_HOME": str(home)})


def test_java_found_on_path_then_under_jvm_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _fake_java(tmp_path / "jdk17", 'openjdk version "17.0.15" 2025-04-15')
    assert sparkengine.java_home({"PATH": str(home / "bin")}) == home
    jvm = tmp_path / "jvm"
    _fake_java(jvm / "java-17", 'openjdk version "17.0.15" 2025-04-15')
    newest = _fake_java(jvm / "java-21", 'openjdk version "21.0.2" 2024-01-16')
    monkeypatch.setattr(sparkengine, "JVM_DIRS", (jvm,))
    assert sparkengine.java_home({"PATH": str(tmp_path / "nowhere")}) == newest


def test_no_java_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sparkengine, "JVM_DIRS", (tmp_path / "jvm",))
    with pytest.raises(EngineUnavailable, match=r"needs Java 17\+ and none was found"):
        sparkengine.java_home({"PATH": str(tmp_path / "nowhere")})


def test_pyspark_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # what `import pyspark` sees uninstalled
    assert cli.main(_build(tmp_path, "--engine", "spark")) == cli.EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert "needs pyspark" in err and "pip install 'rankswap[spark]'" in err
    assert not (tmp_path / "store").exists()


def test_engine_choice_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["features", "build", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--engine {duckdb,spark}" in out and "--spark-master URL" in out
    with pytest.raises(SystemExit):
        cli.main(_build(Path("/nonexistent"), "--engine", "polars"))
    assert "invalid choice: 'polars'" in capsys.readouterr().err


def test_db_or_spark_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = (tmp_path / "store").as_uri()
    base = ["features", "build", "--as-of", "2026-03-01", "--store", store]
    for extra, says in (
        ([], "give the product DB (--db) or Spark's inputs (--spark-inputs)"),
        (["--db", "sqlite:///x.db", "--spark-inputs", "/x"], "give the product DB (--db) or"),
        (["--spark-inputs", str(tmp_path)], "--spark-inputs are read by Spark: add --engine"),
    ):
        assert cli.main([*base, *extra]) == cli.EXIT_ERROR
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and says in err and len(err.splitlines()) == 1
    assert not (tmp_path / "store").exists()
