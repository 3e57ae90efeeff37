"""The canary analysis: the canary pods' shadow comparison judged against ``spec.rollout.analysis``.

Pure: :func:`judge` takes the analysis spec, each canary pod's comparisons (as its admin state
reports them, ``rankswap.podstate.PodState.shadow``), the bundles, how long the canary has
served, and returns a verdict with the numbers measured against the thresholds. The planner
(:mod:`rankswap_operator.plan`) holds the canary while the verdict is ``Waiting`` or ``Paused``,
continues on ``Passed`` and fails the rollout (reason ``AnalysisFailed``) on ``Failed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from rankswap.comparison import Comparison, merge
from rankswap_operator.spec import Analysis

Verdict = Literal["Waiting", "Passed", "Failed", "Paused", "Skipped"]


@dataclass(frozen=True)
class AnalysisResult:
    verdict: Verdict
    message: str
    evaluated_at: datetime
    reference: str = ""
    compared: int = 0
    measured: dict[str, float] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        """The canary may go on (``Passed``, ``Skipped``) or the rollout is over (``Failed``)."""
        return self.verdict in ("Passed", "Skipped", "Failed")


def bundle_id(versions: tuple[str, str]) -> str:
    """The ranker's bundle id of (model version, features version)."""
    return f"{versions[0]}+{versions[1]}"


# (measured name, analysis attribute, comparison attribute, "min" or "max", label)
_CHECKS: tuple[tuple[str, str, str, Literal["min", "max"], str], ...] = (
    ("top1Agreement", "min_top1_agreement", "top1_agreement", "min", "top-1 agreement"),
    ("topKOverlap", "min_topk_overlap", "topk_overlap", "min", "top-k overlap"),
    ("rankCorrelation", "min_rank_correlation", "rank_correlation", "min", "rank correlation"),
    ("psi", "max_psi", "psi", "max", "PSI"),
    ("errorRate", "max_error_rate", "active_error_rate", "max", "error rate"),
    ("p99Ratio", "max_p99_ratio", "p99_ratio", "max", "p99 ratio new/old"),
)


def judge(
    analysis: Analysis,
    comparisons: Mapping[str, Sequence[Comparison]],
    *,
    new: tuple[str, str],
    old: tuple[str, str] | None,
    waited_seconds: float,
    now: datetime,
    cohort: str | None = None,
) -> AnalysisResult:
    """The verdict on the canary pods (``comparisons``: pod name → its state's ``shadow``)
    serving ``new`` while ``old`` is the bundle they served before, ``waited_seconds`` after the
    canary wave came to serve ``new``. ``cohort``: a tenant canary's step, by the fingerprint
    of its assignment: only the cohort's requests (served by ``new``, compared with ``old``)
    of this step count."""
    if old is None or old == new:
        return AnalysisResult("Skipped", "no previous good bundle to compare with; not judged", now)
    active, reference = bundle_id(new), bundle_id(old)
    pair = [
        c
        for cs in comparisons.values()
        for c in cs
        if (c.active, c.reference, c.cohort) == (active, reference, cohort)
    ]
    merged = merge(pair)
    total = (
        merged[0]
        if merged
        else Comparison(active=active, reference=reference, since="", cohort=cohort)
    )
    pods = ", ".join(sorted(comparisons))
    if total.compared < analysis.min_compared:
        seen = f"{total.compared}/{analysis.min_compared} requests compared on {pods} after {int(waited_seconds)}s"
        if waited_seconds < analysis.wait_seconds:
            return AnalysisResult(
                "Waiting", f"waiting for traffic: {seen}", now, reference, total.compared
            )
        action = analysis.insufficient_traffic
        verdicts: dict[str, Verdict] = {"Fail": "Failed", "Pass": "Passed", "Pause": "Paused"}
        verdict = verdicts[action]
        said = {
            "Fail": "failed (insufficientTraffic: Fail)",
            "Pass": "passed without judging the numbers (insufficientTraffic: Pass)",
            "Pause": "paused, still waiting (insufficientTraffic: Pause)",
        }[action]
        return AnalysisResult(
            verdict,
            f"not enough traffic in {analysis.wait_seconds}s: {seen}; {said}",
            now,
            reference,
            total.compared,
        )
    measured: dict[str, float] = {}
    failures: list[str] = []
    checks: list[str] = []
    for name, attr, field_name, kind, label in _CHECKS:
        threshold: float | None = getattr(analysis, attr)
        value: float | None = getattr(total, field_name)
        if value is not None:
            measured[name] = round(float(value), 4)
        if threshold is None:
            continue
        if value is None:
            failures.append(f"{label} not measured (threshold {kind} {threshold:g})")
            continue
        ok = value >= threshold if kind == "min" else value <= threshold
        text = f"{label} {value:.4g} {'>=' if kind == 'min' else '<='} {threshold:g}"
        if ok:
            checks.append(text)
        else:
            failures.append(
                f"{label} {value:.4g} {'<' if kind == 'min' else '>'} {kind} {threshold:g}"
            )
    where = f"{total.compared} requests compared on {pods}"
    if failures:
        return AnalysisResult(
            "Failed",
            f"{'; '.join(failures)} ({where}; passed: {', '.join(checks) or 'none'})",
            now,
            reference,
            total.compared,
            measured,
        )
    return AnalysisResult(
        "Passed", f"{', '.join(checks)} ({where})", now, reference, total.compared, measured
    )
