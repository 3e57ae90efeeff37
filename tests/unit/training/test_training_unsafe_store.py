"""``rankswap examples`` on a store holding a crafted manifest: one-line error naming the entry,
exit 2, and nothing written where the manifest pointed."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import date
from pathlib import Path

import pytest

from rankswap import artifacts
from rankswap_training import cli


def test_examples_refuses_a_manifest_naming_an_absolute_path(
    capsys: pytest.CaptureFixture[str], small_db_url: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    fb = ["features", "build", "--db", small_db_url, "--as-of", "2026-03-31"]
    assert cli.main([*fb, "--store", store.as_uri()]) == 0
    capsys.readouterr()
    fake = tmp_path / "fake-model"
    fake.mkdir()
    (fake / "model.onnx").write_bytes(b"m")
    latest = artifacts.artifact_uri(store.as_uri(), "model", "line-items", "latest")
    artifacts.publish_artifact(
        store.as_uri(),
        "model",
        "line-items",
        date(2026, 3, 31),
        fake,
        requires_feature_schema="1.0.0",
    )
    target = tmp_path / "planted-by-the-store"
    good = artifacts.read_manifest(latest)
    entry = artifacts.FileEntry(1, hashlib.sha256(b"x").hexdigest())
    crafted = dataclasses.replace(good, files={str(target): entry})
    Path(artifacts.parse_uri(latest).path, "manifest.json").write_bytes(crafted.to_json())
    code = cli.main(
        [
            "examples",
            "--db",
            small_db_url,
            "--store",
            store.as_uri(),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert f"files entry {str(target)!r} refused: an absolute path" in err
    assert not target.exists()
