"""The one check for names used as paths or keys, and the resolve-inside-a-folder check."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from rankswap.artifacts import (
    FileEntry,
    Manifest,
    ManifestInvalid,
    UnsafePath,
    check_relpath,
    resolve_within,
)
from rankswap.artifacts.manifest import content_version, scan_files
from rankswap.artifacts.paths import MAX_COMPONENT_BYTES, MAX_DEPTH, MAX_PATH_CHARS


@pytest.mark.parametrize(
    "rel", ["model.onnx", "tables/item.keys.npy", "a/b/c-d_e.f", "日本語/表.bin", "x" * 255]
)
def test_normal_relative_paths_pass(rel: str) -> None:
    assert check_relpath(rel, where="here") == rel


@pytest.mark.parametrize(
    ("rel", "says"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("../escape", "'..'"),
        ("tables/../../escape", "'..'"),
        ("a/./b", "'.'"),
        (".", "'.'"),
        ("a//b", "empty component"),
        ("a/", "empty component"),
        ("a\\..\\b", "backslash"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("x" * (MAX_COMPONENT_BYTES + 1), f"longer than {MAX_COMPONENT_BYTES} bytes"),
        ("é" * 128, f"longer than {MAX_COMPONENT_BYTES} bytes"),  # 256 bytes in UTF-8
        ("/".join(["a"] * (MAX_DEPTH + 1)), f"more than {MAX_DEPTH}"),
        ("a/" * 600 + "b", f"longer than {MAX_PATH_CHARS}"),
        (7, "not a string"),
    ],
)
def test_unsafe_names_are_refused_naming_the_entry(rel: object, says: str) -> None:
    with pytest.raises(UnsafePath, match=says) as info:
        check_relpath(rel, where="s3://b/models/m/latest/manifest.json", what="files entry")
    message = str(info.value)
    assert message.startswith("s3://b/models/m/latest/manifest.json: files entry ")
    assert info.value.file == str(rel)


def test_resolve_within_follows_symlinks_that_stay_inside(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_bytes(b"x")
    (tmp_path / "alias").symlink_to("real")
    assert resolve_within(tmp_path, "alias/f", where="w") == (tmp_path / "real" / "f").resolve()
    assert resolve_within(tmp_path, "not/yet/there", where="w") == tmp_path / "not/yet/there"


def test_resolve_within_refuses_symlinks_that_leave(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").write_bytes(b"s")
    (root / "file-link").symlink_to(tmp_path / "secret")
    (root / "dir-link").symlink_to(tmp_path)
    for rel in ("file-link", "dir-link/secret", "dir-link/new-file"):
        with pytest.raises(UnsafePath, match=rf"{rel!r} refused: resolves to .*outside"):
            resolve_within(root, rel, where="file:///root")


def test_a_root_that_is_itself_a_symlink_is_fine(tmp_path: Path) -> None:
    (tmp_path / "volume").mkdir()
    (tmp_path / "mount").symlink_to(tmp_path / "volume")
    assert resolve_within(tmp_path / "mount", "a/b", where="w") == tmp_path / "volume" / "a/b"


def manifest_doc(**overrides: object) -> bytes:
    files = {"model.onnx": FileEntry(1, "0" * 64)}
    doc: dict[str, object] = {
        "format_version": 1,
        "kind": "model",
        "name": "line-items",
        "as_of": "2026-07-01",
        "created_at": "2026-07-01T00:00:00+00:00",
        "version": content_version("model", "line-items", date(2026, 7, 1), files),
        "files": {"model.onnx": {"size": 1, "sha256": "0" * 64}},
        "content_dir": "",
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("override", "entry"),
    [
        ({"files": {"/etc/cron.d/x": {"size": 1, "sha256": "0" * 64}}}, "/etc/cron.d/x"),
        ({"files": {"../../x": {"size": 1, "sha256": "0" * 64}}}, "../../x"),
        ({"files": {"manifest.json": {"size": 1, "sha256": "0" * 64}}}, "manifest.json"),
        ({"files": {".complete": {"size": 1, "sha256": "0" * 64}}}, ".complete"),
        ({"content_dir": "../../../other/"}, "../../../other"),
        ({"content_dir": "/abs/"}, "/abs"),
        ({"name": "../x"}, "../x"),
        ({"version": "../../evil"}, "../../evil"),
    ],
)
def test_a_manifest_with_an_unsafe_name_is_refused(override: dict[str, object], entry: str) -> None:
    with pytest.raises(UnsafePath) as info:
        Manifest.from_json(manifest_doc(**override), where="file:///st/manifest.json")
    assert info.value.file == entry and repr(entry) in str(info.value)


def test_the_latest_content_dir_form_is_accepted() -> None:
    m = Manifest.from_json(manifest_doc(content_dir="2026-07-01-abcdef12/"), where="w")
    assert m.content_dir == "2026-07-01-abcdef12/"


def test_a_version_that_is_not_derived_from_the_content_is_refused() -> None:
    """The cache is keyed by version: another artifact's version must not be claimable."""
    with pytest.raises(ManifestInvalid, match="does not match its content"):
        Manifest.from_json(manifest_doc(version="2026-07-01-00000000"), where="w")


def test_publishing_refuses_a_symlink_that_leaves_the_source(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.onnx").write_bytes(b"m")
    (tmp_path / "private.key").write_bytes(b"k")
    (src / "inside").symlink_to("model.onnx")
    assert set(scan_files(src)) == {"model.onnx", "inside"}
    (src / "leak").symlink_to(tmp_path / "private.key")
    with pytest.raises(UnsafePath, match="'leak' refused"):
        scan_files(src)
