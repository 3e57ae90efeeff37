"""The command line says what became of ``latest/``: moved, kept (a backfill), or moved back."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankswap import artifacts
from rankswap import featurespec as fs
from rankswap_training import cli


def test_features_backfill_keeps_latest_and_says_so(
    capsys: pytest.CaptureFixture[str], small_db_url: str, tmp_path: Path
) -> None:
    store = (tmp_path / "store").as_uri()
    build = ["features", "build", "--db", small_db_url, "--store", store, "--as-of"]
    latest = artifacts.artifact_uri(store, "features", fs.FEATURE_SCHEMA_VERSION, "latest")

    assert cli.main([*build, "2026-03-31"]) == 0
    newer = artifacts.read_manifest(latest).version
    assert f"-> {newer}" in capsys.readouterr().out

    assert cli.main([*build, "2026-03-30"]) == 0
    out = capsys.readouterr().out
    assert f"latest kept at {newer}" in out and "--move-latest-backwards" in out
    assert artifacts.read_manifest(latest).version == newer

    assert cli.main([*build, "2026-03-29", "--move-latest-backwards"]) == 0
    older = artifacts.read_manifest(latest)
    assert older.as_of.isoformat() == "2026-03-29"
    assert f"moved BACKWARDS from {newer} to {older.version}" in capsys.readouterr().out
