"""The ArtifactVersion spec as a typed value, parsed once from the resource body."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rankswap.artifacts import ArtifactError, parse_artifact_uri
from rankswap_operator.errors import InvalidSpec

Strategy = Literal["AllAtOnce", "Canary"]


@dataclass(frozen=True)
class Selector:
    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        for key, op, values in self.match_expressions:
            present = key in labels
            if op == "In" and (not present or labels[key] not in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True

    def to_label_selector(self) -> str:
        """The same selector in the API server's string form (for list/watch calls)."""
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for key, op, values in self.match_expressions:
            joined = ",".join(values)
            parts.append(
                {
                    "In": f"{key} in ({joined})",
                    "NotIn": f"{key} notin ({joined})",
                    "Exists": key,
                }.get(op, f"!{key}")
            )
        return ",".join(parts)


@dataclass(frozen=True)
class Rollout:
    strategy: Strategy = "AllAtOnce"
    canary_pods: int = 1
    canary_verify_seconds: int = 10
    batch_size: int = 1000
    pod_timeout_seconds: int = 120


@dataclass(frozen=True)
class AVSpec:
    selector: Selector
    model_uri: str
    features_uri: str
    refresh_interval_seconds: int = 300
    admin_port: int = 8081
    token_secret: str | None = None
    token_key: str = "token"
    rollout: Rollout = Rollout()
    auto_rollback: bool = True
    suspend: bool = False


def parse_spec(spec: Mapping[str, Any]) -> AVSpec:
    """Parse a spec the API server has already validated and defaulted; re-check what it cannot."""
    try:
        sel = spec["selector"]
        selector = Selector(
            match_labels=tuple(
                sorted((str(k), str(v)) for k, v in (sel.get("matchLabels") or {}).items())
            ),
            match_expressions=tuple(
                (str(e["key"]), str(e["operator"]), tuple(str(v) for v in e.get("values") or ()))
                for e in sel.get("matchExpressions") or ()
            ),
        )
        if not selector.match_labels and not selector.match_expressions:
            raise InvalidSpec("spec.selector is empty: it would select every pod in the namespace")
        model_uri = str(spec["model"]["uri"])
        features_uri = str(spec["features"]["uri"])
        admin = spec.get("admin") or {}
        token_ref = admin.get("tokenSecretRef") or {}
        ro = spec.get("rollout") or {}
        rollout = Rollout(
            strategy="Canary" if ro.get("strategy") == "Canary" else "AllAtOnce",
            canary_pods=int(ro.get("canaryPods", 1)),
            canary_verify_seconds=int(ro.get("canaryVerifySeconds", 10)),
            batch_size=int(ro.get("batchSize", 1000)),
            pod_timeout_seconds=int(ro.get("podTimeoutSeconds", 120)),
        )
        parsed = AVSpec(
            selector=selector,
            model_uri=model_uri,
            features_uri=features_uri,
            refresh_interval_seconds=int(spec["features"].get("refreshIntervalSeconds", 300)),
            admin_port=int(admin.get("port", 8081)),
            token_secret=token_ref.get("name"),
            token_key=str(token_ref.get("key", "token")),
            rollout=rollout,
            auto_rollback=bool(spec.get("autoRollback", True)),
            suspend=bool(spec.get("suspend", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidSpec(f"spec is incomplete or malformed: {exc}") from exc
    for field, uri, kind in (("model", model_uri, "model"), ("features", features_uri, "features")):
        try:
            ref = parse_artifact_uri(uri)
        except ArtifactError as exc:
            raise InvalidSpec(f"spec.{field}.uri: {exc}") from exc
        if ref.kind != kind:
            raise InvalidSpec(
                f"spec.{field}.uri points at a {ref.kind} artifact, not a {kind} artifact"
            )
    return parsed
