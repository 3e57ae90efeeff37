"""Every schema node of the ArtifactVersion CRD uses only JSON-Schema (structural) keywords.

A YAML slip such as ``{type: string, description: Verdict, if one ran.}`` (a comma in a flow
mapping) parses as an extra key ``if one ran.``; the API server drops it, so the stored CRD no
longer equals the file and a second server-side applier (``helm install`` after ``kubectl apply
--server-side``) meets a conflict on ``.spec.versions``. Caught here, without a cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CRDS = [
    REPO / "manifests" / "crd" / "artifactversions.rankswap.io.yaml",
    REPO / "helm" / "rankswap" / "crds" / "artifactversions.rankswap.io.yaml",
]
KEYWORDS = {
    "type", "description", "properties", "items", "enum", "default", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "format", "pattern", "minLength", "maxLength",
    "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties", "required",
    "additionalProperties", "nullable", "anyOf", "oneOf", "allOf", "not", "multipleOf", "title",
    "example", "externalDocs",
}  # fmt: skip

pytestmark = pytest.mark.timeout(30)


def schema_nodes(node: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield where, node
    for name, child in (node.get("properties") or {}).items():
        yield from schema_nodes(child, f"{where}.{name}")
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            yield from schema_nodes(node[key], f"{where}.{key}")
    for key in ("anyOf", "oneOf", "allOf"):
        for i, child in enumerate(node.get(key) or []):
            yield from schema_nodes(child, f"{where}.{key}[{i}]")


@pytest.mark.parametrize("path", CRDS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_schema_node_uses_only_schema_keywords(path: Path) -> None:
    crd = yaml.safe_load(path.read_text())
    bad = []
    for version in crd["spec"]["versions"]:
        root = version["schema"]["openAPIV3Schema"]
        for where, node in schema_nodes(root, version["name"]):
            unknown = {k for k in node if k not in KEYWORDS and not k.startswith("x-kubernetes-")}
            if unknown:
                bad.append(f"{where}: {sorted(unknown)}")
    assert not bad, "not schema keywords (a YAML slip?):\n" + "\n".join(bad)


def test_the_two_copies_are_identical() -> None:
    assert CRDS[0].read_text() == CRDS[1].read_text()


def test_the_status_enums_hold_every_value_the_operator_writes() -> None:
    # A value missing from an enum makes every status write a 422 (the rollout is then never
    # reported: `make demo` met it with verdict Skipped on a first rollout).
    from rankswap_operator.status import PHASES, VERDICTS

    crd = yaml.safe_load(CRDS[0].read_text())
    rollout = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"][
        "properties"
    ]["rollout"]["properties"]
    assert set(VERDICTS) <= set(rollout["analysis"]["properties"]["verdict"]["enum"])
    assert set(PHASES) <= set(rollout["phase"]["enum"])
    from typing import get_args

    from rankswap_operator.plan import PodState

    pods = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"][
        "properties"
    ]["pods"]["items"]["properties"]
    assert set(get_args(PodState)) <= set(pods["state"]["enum"])
    assert "Cohort" in get_args(PodState)
