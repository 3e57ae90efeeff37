"""The artifact contract against both back ends: a local folder and a real moto S3 server."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from rankswap.artifacts import (
    AlreadyPublished,
    ChecksumMismatch,
    Manifest,
    ManifestMissing,
    SchemaMismatch,
    StoreUnavailable,
    WrongKind,
    artifact_uri,
    check_compatible,
    fetch_artifact,
    list_versions,
    parse_uri,
    publish_artifact,
    read_manifest,
)
from rankswap.artifacts.store import store_for

pytestmark = pytest.mark.integration
D1, D2 = date(2026, 5, 1), date(2026, 5, 2)


def make_src(tmp_path: Path, tag: str) -> Path:
    src = tmp_path / f"src-{tag}"
    (src / "tables").mkdir(parents=True)
    (src / "model.onnx").write_bytes(f"onnx-{tag}".encode() * 100)
    (src / "tables" / "items.arrow").write_bytes(f"arrow-{tag}".encode())
    return src


def publish_model(root: str, src: Path, when: date, **kw: object) -> Manifest:
    return publish_artifact(
        root,
        "model",
        "line-items",
        when,
        src,
        requires_feature_schema="1.0.0",
        **kw,  # type: ignore[arg-type]
    ).manifest


def test_publish_then_fetch_dated_and_latest(store_root: str, tmp_path: Path) -> None:
    m1 = publish_artifact(
        store_root,
        "model",
        "line-items",
        D1,
        make_src(tmp_path, "a"),
        requires_feature_schema="1.0.0",
        metrics={"ndcg@5": 0.5},
        data_window=(date(2026, 1, 1), D1),
    ).manifest
    m2 = publish_artifact(
        store_root,
        "model",
        "line-items",
        D2,
        make_src(tmp_path, "b"),
        requires_feature_schema="1.0.0",
    ).manifest
    assert m1.version != m2.version and m1.version.startswith("2026-05-01-")

    latest = artifact_uri(store_root, "model", "line-items", "latest")
    assert read_manifest(latest).version == m2.version
    dated = artifact_uri(store_root, "model", "line-items", D1)
    got, local = fetch_artifact(dated, tmp_path / "cache", expect_kind="model")
    assert got.version == m1.version and got.metrics == {"ndcg@5": 0.5}
    assert got.data_window == (date(2026, 1, 1), D1)
    assert (local / "model.onnx").read_bytes() == b"onnx-a" * 100
    assert (local / "tables" / "items.arrow").read_bytes() == b"arrow-a"

    # latest/ and the dated path of the same content share one cache entry.
    m_latest, local_latest = fetch_artifact(latest, tmp_path / "cache")
    _, local_d2 = fetch_artifact(
        artifact_uri(store_root, "model", "line-items", D2), tmp_path / "cache"
    )
    assert local_latest == local_d2 and m_latest.content_dir == f"{m2.version}/"
    assert list_versions(store_root, "model", "line-items") == [D1, D2]


def test_republish_refused_unless_forced(store_root: str, tmp_path: Path) -> None:
    publish_model(store_root, make_src(tmp_path, "a"), D1)
    with pytest.raises(AlreadyPublished, match="pass force"):
        publish_model(store_root, make_src(tmp_path, "b"), D1)
    forced = publish_model(store_root, make_src(tmp_path, "c"), D1, force=True)
    assert (
        read_manifest(artifact_uri(store_root, "model", "line-items", D1)).version == forced.version
    )


def test_corrupt_file_is_named(store_root: str, tmp_path: Path) -> None:
    publish_model(store_root, make_src(tmp_path, "a"), D1)
    dated = parse_uri(artifact_uri(store_root, "model", "line-items", D1))
    store_for(dated).write(dated.join("model.onnx"), b"tampered")
    with pytest.raises(ChecksumMismatch, match=r"model\.onnx") as info:
        fetch_artifact(str(dated), tmp_path / "cache")
    assert info.value.file == "model.onnx"
    assert not list((tmp_path / "cache").rglob("model.onnx")), (
        "nothing unverified is left in the cache"
    )


def test_same_size_corruption_caught_by_sha(store_root: str, tmp_path: Path) -> None:
    publish_model(store_root, make_src(tmp_path, "a"), D1)
    dated = parse_uri(artifact_uri(store_root, "model", "line-items", D1))
    store_for(dated).write(dated.join("tables/items.arrow"), b"ARROW-a")
    with pytest.raises(ChecksumMismatch, match="sha256"):
        fetch_artifact(str(dated), tmp_path / "cache")


def test_missing_manifest_and_missing_path(store_root: str, tmp_path: Path) -> None:
    with pytest.raises(ManifestMissing, match=r"manifest\.json"):
        fetch_artifact(artifact_uri(store_root, "model", "line-items", D1), tmp_path / "cache")


def test_partial_upload_leaves_latest_intact(
    store_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = publish_model(store_root, make_src(tmp_path, "a"), D1)
    from rankswap.artifacts import operations

    real = operations._download_verified
    calls = {"n": 0}

    def flaky(*args: object, **kw: object) -> None:
        calls["n"] += 1
        if calls["n"] == 1:  # the dated path's verification is fine, then the store "breaks"
            real(*args, **kw)  # type: ignore[arg-type]
            return
        raise StoreUnavailable("simulated outage while updating latest/")

    monkeypatch.setattr(operations, "_download_verified", flaky)
    with pytest.raises(StoreUnavailable):
        publish_model(store_root, make_src(tmp_path, "b"), D2)
    monkeypatch.undo()
    latest = artifact_uri(store_root, "model", "line-items", "latest")
    manifest, local = fetch_artifact(latest, tmp_path / "cache")
    assert manifest.version == good.version
    assert (local / "model.onnx").read_bytes() == b"onnx-a" * 100


def test_dated_failure_leaves_no_manifest(
    store_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rankswap.artifacts import operations

    def broken(*args: object, **kw: object) -> None:
        raise StoreUnavailable("simulated outage")

    monkeypatch.setattr(operations, "_download_verified", broken)
    with pytest.raises(StoreUnavailable):
        publish_model(store_root, make_src(tmp_path, "a"), D1)
    monkeypatch.undo()
    with pytest.raises(ManifestMissing):
        read_manifest(artifact_uri(store_root, "model", "line-items", D1))
    assert list_versions(store_root, "model", "line-items") == []


def test_wrong_kind_and_schema_mismatch(store_root: str, tmp_path: Path) -> None:
    model = publish_artifact(
        store_root,
        "model",
        "line-items",
        D1,
        make_src(tmp_path, "m"),
        requires_feature_schema="2.0.0",
    ).manifest
    feats = publish_artifact(store_root, "features", "1.0.0", D1, make_src(tmp_path, "f")).manifest
    with pytest.raises(WrongKind, match="expected a model"):
        fetch_artifact(
            artifact_uri(store_root, "features", "1.0.0", D1), tmp_path / "c", expect_kind="model"
        )
    with pytest.raises(SchemaMismatch, match=r"requires feature schema 2\.0\.0.*schema 1\.0\.0"):
        check_compatible(model, feats)


def test_manifest_lists_sizes_and_digests(store_root: str, tmp_path: Path) -> None:
    publish_model(store_root, make_src(tmp_path, "a"), D1, params={"trees": 50})
    loc = parse_uri(artifact_uri(store_root, "model", "line-items", D1))
    doc = json.loads(store_for(loc).read(loc.join("manifest.json")))
    assert doc["kind"] == "model" and doc["requires_feature_schema"] == "1.0.0"
    assert (
        doc["files"]["model.onnx"]["size"] == 600
        and len(doc["files"]["model.onnx"]["sha256"]) == 64
    )
    assert doc["params"] == {"trees": 50} and doc["created_at"]


def test_unreachable_s3_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.support.services import free_port

    from rankswap.artifacts.store import reset_s3_client

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("RANKSWAP_S3_MAX_ATTEMPTS", "1")
    reset_s3_client()
    try:
        with pytest.raises(StoreUnavailable, match="S3 unreachable"):
            read_manifest("s3://bucket/models/line-items/latest")
    finally:
        monkeypatch.undo()
        reset_s3_client()
