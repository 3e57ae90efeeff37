"""The operator refuses a target whose manifest names a path that leaves the artifact."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

from rankswap.artifacts import artifact_uri, parse_uri, publish_artifact, read_manifest
from rankswap_operator.plan import PinnedBundle, TargetProblem
from rankswap_operator.resolve import resolve_target

D1 = date(2026, 5, 1)


def test_a_manifest_with_an_unsafe_content_dir_is_a_target_problem(
    file_root: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.onnx").write_bytes(b"m")
    (src / "tables.bin").write_bytes(b"t")
    publish_artifact(file_root, "model", "line-items", D1, src, requires_feature_schema="1.0.0")
    publish_artifact(file_root, "features", "1.0.0", D1, src)
    model = artifact_uri(file_root, "model", "line-items", "latest")
    features = artifact_uri(file_root, "features", "1.0.0", D1)
    assert isinstance(resolve_target(model, features), PinnedBundle)

    loc = parse_uri(model)
    crafted = dataclasses.replace(read_manifest(model), content_dir="../../../features/1.0.0/")
    Path(loc.path, "manifest.json").write_bytes(crafted.to_json())
    problem = resolve_target(model, features)
    assert isinstance(problem, TargetProblem)
    assert problem.reason == "UnsafePath"
    assert "content_dir '../../../features/1.0.0'" in problem.message
