"""The ArtifactVersion spec as a typed value, parsed once from the resource body."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from rankswap.artifacts import ArtifactError, parse_artifact_uri
from rankswap.cohorts import MAX_COHORT_TENANTS, CohortAssignment
from rankswap_operator.errors import InvalidSpec

Strategy = Literal["AllAtOnce", "Canary", "TenantCanary"]
MAX_STEPS = 10
Insufficient = Literal["Fail", "Pass", "Pause"]


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
class Analysis:
    """``spec.rollout.analysis``: thresholds on the canary pods' shadow comparison (None: not
    judged), how many compared requests are needed, how long to wait for them, and what to do
    when they do not come."""

    min_compared: int = 100
    wait_seconds: int = 300
    insufficient_traffic: Insufficient = "Fail"
    min_top1_agreement: float | None = None
    min_topk_overlap: float | None = None
    min_rank_correlation: float | None = None
    max_psi: float | None = None
    max_error_rate: float | None = None
    max_p99_ratio: float | None = None


@dataclass(frozen=True)
class CohortStep:
    """One step of a ``TenantCanary``: tenants added to the cohort and/or its hash share."""

    tenants: tuple[str, ...] = ()
    percent: int = 0


@dataclass(frozen=True)
class Rollout:
    strategy: Strategy = "AllAtOnce"
    steps: tuple[CohortStep, ...] = ()
    """``TenantCanary``: the cohort of each step (widening; :func:`cohort_at`)."""
    canary_pods: int = 1
    canary_verify_seconds: int = 10
    batch_size: int = 1000
    pod_timeout_seconds: int = 120
    instant_rollback: bool = True
    analysis: Analysis | None = None


_THRESHOLDS = {
    "minTop1Agreement": "min_top1_agreement",
    "minTopKOverlap": "min_topk_overlap",
    "minRankCorrelation": "min_rank_correlation",
    "maxPSI": "max_psi",
    "maxErrorRate": "max_error_rate",
    "maxP99Ratio": "max_p99_ratio",
}


def cohort_at(steps: Sequence[CohortStep], index: int) -> CohortAssignment:
    """The cohort of step ``index``: every tenant listed up to it, and the largest percent so
    far (a cohort only widens: whoever was in stays in)."""
    tenants = sorted({t for step in steps[: index + 1] for t in step.tenants})
    percent = max(step.percent for step in steps[: index + 1])
    return CohortAssignment(tenants=tenants, percent=percent)


def parse_steps(docs: Any, strategy: Strategy) -> tuple[CohortStep, ...]:
    """``spec.rollout.steps`` (the CRD checks the same; re-checked here, with the tenant ids
    and the cohort size that only the whole list shows)."""
    if not docs:
        if strategy == "TenantCanary":
            raise InvalidSpec("spec.rollout.steps: strategy TenantCanary needs at least one step")
        return ()
    if strategy != "TenantCanary":
        raise InvalidSpec("spec.rollout.steps are cohort steps: they need strategy TenantCanary")
    if not isinstance(docs, list) or len(docs) > MAX_STEPS:
        raise InvalidSpec(f"spec.rollout.steps: a list of at most {MAX_STEPS} steps")
    steps = []
    for i, doc in enumerate(docs):
        if not isinstance(doc, Mapping):
            raise InvalidSpec(f"spec.rollout.steps[{i}]: not an object")
        step = CohortStep(
            tenants=tuple(str(t) for t in doc.get("tenants") or ()),
            percent=int(doc.get("percent", 0)),
        )
        steps.append(step)
        try:
            cohort_at(steps, i)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise InvalidSpec(
                f"spec.rollout.steps[{i}]: {where + ': ' if where else ''}{first['msg']} "
                f"(a cohort holds at most {MAX_COHORT_TENANTS} listed tenants in all, ids "
                "of letters, digits and ._:-, a percent 0-100, and tenants or a percent)"
            ) from exc
    return tuple(steps)


def parse_analysis(doc: Mapping[str, Any] | None, strategy: Strategy) -> Analysis | None:
    """``spec.rollout.analysis`` (the CRD schema checks the same; a resource written before the
    schema, or through a server without it, is checked here)."""
    if doc is None:
        return None
    if strategy not in ("Canary", "TenantCanary"):
        raise InvalidSpec(
            "spec.rollout.analysis judges canary pods or a tenant cohort: it needs strategy "
            "Canary or TenantCanary"
        )
    thresholds = {
        attr: float(doc[key]) for key, attr in _THRESHOLDS.items() if doc.get(key) is not None
    }
    if not thresholds:
        raise InvalidSpec(
            "spec.rollout.analysis needs at least one threshold: " + ", ".join(_THRESHOLDS)
        )
    insufficient = doc.get("insufficientTraffic", "Fail")
    if insufficient not in ("Fail", "Pass", "Pause"):
        raise InvalidSpec(
            f"spec.rollout.analysis.insufficientTraffic: {insufficient!r} is not Fail, Pass "
            "or Pause"
        )
    analysis = Analysis(
        min_compared=int(doc.get("minCompared", 100)),
        wait_seconds=int(doc.get("waitSeconds", 300)),
        insufficient_traffic=insufficient,
        **thresholds,
    )
    if analysis.min_compared < 1 or analysis.wait_seconds < 1:
        raise InvalidSpec("spec.rollout.analysis: minCompared and waitSeconds must be at least 1")
    return analysis


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
        given = ro.get("strategy")
        strategy: Strategy = given if given in ("Canary", "TenantCanary") else "AllAtOnce"
        rollout = Rollout(
            strategy=strategy,
            steps=parse_steps(ro.get("steps"), strategy),
            canary_pods=int(ro.get("canaryPods", 1)),
            canary_verify_seconds=int(ro.get("canaryVerifySeconds", 10)),
            batch_size=int(ro.get("batchSize", 1000)),
            pod_timeout_seconds=int(ro.get("podTimeoutSeconds", 120)),
            instant_rollback=bool(ro.get("instantRollback", True)),
            analysis=parse_analysis(ro.get("analysis"), strategy),
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
