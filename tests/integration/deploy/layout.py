"""Where the deployables live in the repository, and checks shared by their tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
MANIFESTS = REPO / "manifests"
CRD = MANIFESTS / "crd" / "artifactversions.rankswap.io.yaml"
SAMPLE = MANIFESTS / "samples" / "artifactversion.yaml"
CHART = REPO / "helm" / "rankswap"
ENVIRONMENTS = ("dev", "staging", "prod")


def admin_port_peers(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """The peers a ranker NetworkPolicy admits on the admin port (checks nothing else is)."""
    rules = policy["spec"]["ingress"]
    admin = [r for r in rules if any(p["port"] == "admin" for p in r["ports"])]
    assert len(admin) == 1 and [p["port"] for p in admin[0]["ports"]] == ["admin"], rules
    assert all([p["port"] for p in r["ports"]] == ["http"] for r in rules if r not in admin), rules
    peers: list[dict[str, Any]] = admin[0]["from"]
    return peers


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
