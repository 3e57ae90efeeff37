"""Where the deployables live in the repository."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
MANIFESTS = REPO / "manifests"
CRD = MANIFESTS / "crd" / "artifactversions.rankswap.io.yaml"
SAMPLE = MANIFESTS / "samples" / "artifactversion.yaml"
CHART = REPO / "helm" / "rankswap"
ENVIRONMENTS = ("dev", "staging", "prod")
