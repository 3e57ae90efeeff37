"""Turn the spec's URIs into a :class:`PinnedBundle` by reading both manifests (no file is downloaded)."""

from __future__ import annotations

from rankswap import artifacts
from rankswap.artifacts import (
    ArtifactError,
    ArtifactNotFound,
    ManifestInvalid,
    SchemaMismatch,
    WrongKind,
    check_compatible,
    read_manifest,
)
from rankswap_operator.errors import StoreUnavailable
from rankswap_operator.plan import PinnedBundle, TargetProblem


def resolve_target(model_uri: str, features_uri: str) -> PinnedBundle | TargetProblem:
    """The bundle the spec names, or the reason it can never be rolled out as it stands.

    Raises :class:`~rankswap_operator.errors.StoreUnavailable` when the store does not answer: that is temporary and
    says nothing about the artifacts, so the caller retries rather than failing the rollout.
    """
    try:
        model = read_manifest(model_uri, expect_kind="model")
        features = read_manifest(features_uri, expect_kind="features")
        check_compatible(model, features)
    except artifacts.StoreUnavailable as exc:
        raise StoreUnavailable(str(exc)) from exc
    except ArtifactNotFound as exc:
        return TargetProblem("ArtifactNotFound", str(exc))
    except SchemaMismatch as exc:
        return TargetProblem("SchemaMismatch", str(exc))
    except WrongKind as exc:
        return TargetProblem("WrongKind", str(exc))
    except ManifestInvalid as exc:
        return TargetProblem("ManifestInvalid", str(exc))
    except ArtifactError as exc:
        return TargetProblem(type(exc).__name__, str(exc))
    return PinnedBundle(model_uri, features_uri, model.version, features.version)
