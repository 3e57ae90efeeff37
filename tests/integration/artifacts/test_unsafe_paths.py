"""Crafted artifacts in a store: names and symlinks that try to leave the artifact, the store or
the cache are refused by every reader (fetch, manifest read) on both back ends, naming the entry,
and nothing is written outside the cache."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import date
from pathlib import Path

import pytest

from rankswap.artifacts import (
    FileEntry,
    Manifest,
    UnsafePath,
    artifact_uri,
    fetch_artifact,
    parse_uri,
    publish_artifact,
    read_manifest,
)
from rankswap.artifacts.manifest import content_version
from rankswap.artifacts.store import store_for

pytestmark = pytest.mark.integration
D1 = date(2026, 5, 1)
PAYLOAD = b"attacker's bytes"


def publish(root: str, tmp_path: Path) -> Manifest:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "model.onnx").write_bytes(b"onnx" * 10)
    publish_artifact(root, "model", "line-items", D1, src, requires_feature_schema="1.0.0")
    return read_manifest(artifact_uri(root, "model", "line-items", D1))


def entry(data: bytes) -> FileEntry:
    return FileEntry(size=len(data), sha256=hashlib.sha256(data).hexdigest())


def plant(root: str, label: str, manifest: Manifest, files: dict[str, bytes]) -> str:
    """Write ``manifest`` (and raw objects below the artifact folder) as an attacker would."""
    loc = parse_uri(artifact_uri(root, "model", "line-items", date.fromisoformat(label)))
    store = store_for(loc)
    for key, data in files.items():
        store.write(loc.join(key), data)
    store.write(loc.join("manifest.json"), manifest.to_json())
    return str(loc)


@pytest.mark.parametrize(
    "name",
    ["../../../../../escaped.bin", "tables/../../../escaped.bin", "a//b", "a\\..\\b", "./x"],
)
def test_a_file_name_leaving_the_artifact_is_refused(
    store_root: str, tmp_path: Path, name: str
) -> None:
    good = publish(store_root, tmp_path)
    crafted = dataclasses.replace(good, files={name: entry(PAYLOAD)})
    uri = plant(store_root, "2026-05-02", crafted, {})
    cache = tmp_path / "deep" / "er" / "cache"
    with pytest.raises(UnsafePath, match="files entry") as info:
        fetch_artifact(uri, cache)
    assert info.value.file == name and repr(name) in str(info.value)
    assert not list(tmp_path.rglob("escaped.bin")), "nothing is written outside the cache"


def test_an_absolute_file_name_is_never_written(store_root: str, tmp_path: Path) -> None:
    target = tmp_path / "written-by-the-store.txt"
    good = publish(store_root, tmp_path)
    crafted = dataclasses.replace(good, files={str(target): entry(PAYLOAD)})
    uri = plant(store_root, "2026-05-02", crafted, {str(target).lstrip("/"): PAYLOAD})
    with pytest.raises(UnsafePath, match="absolute path"):
        fetch_artifact(uri, tmp_path / "cache")
    assert not target.exists()


def test_a_content_dir_leaving_the_artifact_is_refused(store_root: str, tmp_path: Path) -> None:
    good = publish(store_root, tmp_path)
    crafted = dataclasses.replace(good, content_dir="../2026-05-01/")
    uri = plant(store_root, "2026-05-02", crafted, {})
    for read in (lambda: read_manifest(uri), lambda: fetch_artifact(uri, tmp_path / "cache")):
        with pytest.raises(UnsafePath, match=r"content_dir '\.\./2026-05-01'"):
            read()


def test_a_version_or_name_leaving_the_cache_is_refused(store_root: str, tmp_path: Path) -> None:
    good = publish(store_root, tmp_path)
    for crafted in (
        dataclasses.replace(good, version="../../../../evil"),
        dataclasses.replace(good, name="../evil"),
    ):
        uri = plant(store_root, "2026-05-02", crafted, {})
        with pytest.raises(UnsafePath):
            fetch_artifact(uri, tmp_path / "cache")
    assert not list(tmp_path.rglob("evil"))


def test_a_symlinked_file_leaving_the_store_is_not_served(file_root: str, tmp_path: Path) -> None:
    publish(file_root, tmp_path)
    secret = tmp_path / "secret.key"
    secret.write_bytes(PAYLOAD)
    good = read_manifest(artifact_uri(file_root, "model", "line-items", D1))
    folder = Path(parse_uri(artifact_uri(file_root, "model", "line-items", D1)).path)
    (folder / "model.onnx").unlink()
    (folder / "model.onnx").symlink_to(secret)
    files = {"model.onnx": entry(PAYLOAD)}
    version = content_version(good.kind, good.name, good.as_of, files)
    crafted = dataclasses.replace(good, files=files, version=version)
    (folder / "manifest.json").write_bytes(crafted.to_json())
    with pytest.raises(UnsafePath, match=r"'model\.onnx' refused: resolves to .*secret\.key"):
        fetch_artifact(str(parse_uri(folder.as_uri())), tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("model.onnx"))


def test_a_symlinked_artifact_folder_leaving_the_store_is_refused(
    file_root: str, tmp_path: Path
) -> None:
    """``<root>/models/line-items/2026-05-02 -> /elsewhere``: refused at the manifest read."""
    elsewhere = tmp_path / "elsewhere"
    publish(elsewhere.as_uri(), tmp_path)  # a complete, valid artifact outside the store
    outside = Path(parse_uri(artifact_uri(elsewhere.as_uri(), "model", "line-items", D1)).path)
    link = Path(parse_uri(artifact_uri(file_root, "model", "line-items", date(2026, 5, 2))).path)
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    with pytest.raises(UnsafePath, match=r"artifact folder .* outside"):
        read_manifest(link.as_uri())
    with pytest.raises(UnsafePath):
        fetch_artifact(link.as_uri(), tmp_path / "cache")


def test_symlinks_that_stay_inside_the_store_are_followed(file_root: str, tmp_path: Path) -> None:
    good = publish(file_root, tmp_path)
    dated = Path(parse_uri(artifact_uri(file_root, "model", "line-items", D1)).path)
    alias = dated.parent / "2026-05-09"
    alias.symlink_to(dated.name)
    manifest, local = fetch_artifact(alias.as_uri(), tmp_path / "cache")
    assert manifest.version == good.version and (local / "model.onnx").read_bytes() == b"onnx" * 10


def test_a_symlinked_cache_folder_leaving_the_cache_is_refused(
    store_root: str, tmp_path: Path
) -> None:
    publish(store_root, tmp_path)
    cache = tmp_path / "cache"
    (cache / "model").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (cache / "model" / "line-items").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePath, match="cache folder"):
        fetch_artifact(artifact_uri(store_root, "model", "line-items", D1), cache)
    assert not any((tmp_path / "elsewhere").iterdir())


def test_an_oversized_manifest_is_refused_unread(store_root: str, tmp_path: Path) -> None:
    from rankswap.artifacts import ManifestInvalid
    from rankswap.artifacts.manifest import MAX_MANIFEST_BYTES

    good = publish(store_root, tmp_path)
    padded = dataclasses.replace(good, extra={"pad": "x" * MAX_MANIFEST_BYTES})
    uri = plant(store_root, "2026-05-02", padded, {})
    with pytest.raises(ManifestInvalid, match=f"larger than {MAX_MANIFEST_BYTES} bytes"):
        read_manifest(uri)
