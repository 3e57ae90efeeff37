"""Between the resource's ``status`` (JSON) and the planner's typed values, both ways."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rankswap_operator.analysis import AnalysisResult
from rankswap_operator.plan import Condition, HistoryEntry, PinnedBundle, Plan, RolloutRecord
from rankswap_operator.spec import CohortStep, cohort_at

PHASES = ("Progressing", "Verifying", "Analyzing", "Paused", "Complete", "Failed")
VERDICTS = ("Waiting", "Passed", "Failed", "Paused", "Skipped")


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def bundle_to_json(bundle: PinnedBundle | None) -> dict[str, str] | None:
    if bundle is None:
        return None
    return {
        "modelUri": bundle.model_uri,
        "featuresUri": bundle.features_uri,
        "modelVersion": bundle.model_version,
        "featuresVersion": bundle.features_version,
    }


def bundle_from_json(doc: Mapping[str, Any] | None) -> PinnedBundle | None:
    if not doc or not all(
        doc.get(k) for k in ("modelUri", "featuresUri", "modelVersion", "featuresVersion")
    ):
        return None
    return PinnedBundle(
        str(doc["modelUri"]),
        str(doc["featuresUri"]),
        str(doc["modelVersion"]),
        str(doc["featuresVersion"]),
    )


def rollout_from_json(doc: Mapping[str, Any] | None) -> RolloutRecord | None:
    if not doc or doc.get("phase") not in PHASES:
        return None
    started = parse_time(doc.get("startedAt"))
    if started is None:
        return None
    return RolloutRecord(
        generation=int(doc.get("generation", 0)),
        model_version=str(doc.get("modelVersion", "")),
        features_version=str(doc.get("featuresVersion", "")),
        phase=doc["phase"],
        started_at=started,
        wave_completed_at=parse_time(doc.get("waveCompletedAt")),
        finished_at=parse_time(doc.get("finishedAt")),
        reason=str(doc.get("reason", "")),
        message=str(doc.get("message", "")),
        pushed={k: t for k, v in (doc.get("pushed") or {}).items() if (t := parse_time(v))},
        kind="Rollback" if doc.get("kind") == "Rollback" else "Rollout",
        canary=tuple(str(n) for n in doc.get("canaryPods") or ()),
        analysis=analysis_from_json(doc.get("analysis")),
        step=int((doc.get("tenantCanary") or {}).get("step", 0)),
    )


def analysis_from_json(doc: Mapping[str, Any] | None) -> AnalysisResult | None:
    if not doc or doc.get("verdict") not in VERDICTS:
        return None
    at = parse_time(doc.get("evaluatedAt"))
    if at is None:
        return None
    return AnalysisResult(
        verdict=doc["verdict"],
        message=str(doc.get("message", "")),
        evaluated_at=at,
        reference=str(doc.get("reference", "")),
        compared=int(doc.get("compared", 0)),
        measured={str(k): float(v) for k, v in (doc.get("measured") or {}).items()},
    )


def analysis_to_json(result: AnalysisResult) -> dict[str, Any]:
    return {
        "verdict": result.verdict,
        "message": result.message[:2000],
        "reference": result.reference,
        "compared": result.compared,
        "measured": dict(result.measured),
        "evaluatedAt": iso(result.evaluated_at),
    }


def tenant_canary_to_json(rollout: RolloutRecord, steps: Sequence[CohortStep]) -> dict[str, Any]:
    """``status.rollout.tenantCanary``: the step in flight and its cohort, for people."""
    index = min(rollout.step, len(steps))
    doc: dict[str, Any] = {"step": index, "steps": len(steps)}
    if index < len(steps):
        cohort = cohort_at(steps, index)
        doc["cohort"] = cohort.describe()
        doc["percent"] = cohort.percent
        doc["tenants"] = len(cohort.tenants)
        doc["fingerprint"] = cohort.fingerprint
        doc["current"] = f"{index + 1}/{len(steps)}"
    else:
        doc["cohort"] = "every tenant"
        doc["percent"] = 100
        doc["current"] = "done"
    return doc


def rollout_to_json(
    rollout: RolloutRecord | None, steps: Sequence[CohortStep] = ()
) -> dict[str, Any] | None:
    if rollout is None:
        return None
    doc: dict[str, Any] = {
        "generation": rollout.generation,
        "modelVersion": rollout.model_version,
        "featuresVersion": rollout.features_version,
        "phase": rollout.phase,
        "startedAt": iso(rollout.started_at),
        "reason": rollout.reason,
        "message": rollout.message[:2000],
        "pushed": {k: iso(v) for k, v in rollout.pushed.items()},
        "kind": rollout.kind,
        "canaryPods": list(rollout.canary),
    }
    if rollout.analysis is not None:
        doc["analysis"] = analysis_to_json(rollout.analysis)
    if steps:
        doc["tenantCanary"] = tenant_canary_to_json(rollout, steps)
    if rollout.wave_completed_at:
        doc["waveCompletedAt"] = iso(rollout.wave_completed_at)
    if rollout.finished_at:
        doc["finishedAt"] = iso(rollout.finished_at)
    return doc


def conditions_to_json(
    conditions: Sequence[Condition],
    previous: Sequence[Mapping[str, Any]],
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Conditions keep their ``lastTransitionTime`` while their status does not change."""
    before = {str(c.get("type")): c for c in previous}
    out = []
    for cond in conditions:
        old = before.get(cond.type)
        since = old.get("lastTransitionTime") if old and old.get("status") == cond.status else None
        out.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message[:2000],
                "lastTransitionTime": since or iso(now),
                "observedGeneration": generation,
            }
        )
    return out


def history_to_json(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "generation": entry.generation,
        "modelVersion": entry.model_version,
        "featuresVersion": entry.features_version,
        "outcome": entry.outcome,
        "startedAt": iso(entry.started_at),
        "finishedAt": iso(entry.finished_at),
        "message": entry.message[:500],
        "kind": entry.kind,
        **({"analysis": entry.analysis} if entry.analysis else {}),
    }


def good_before(status: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Versions that an earlier rollout brought to every pod (``history``), and ``lastGood``."""
    found = {
        (str(h.get("modelVersion")), str(h.get("featuresVersion")))
        for h in status.get("history") or []
        if h.get("outcome") == "Succeeded"
    }
    last = bundle_from_json(status.get("lastGood"))
    if last is not None:
        found.add(last.versions)
    return found


def status_from_plan(
    result: Plan,
    *,
    previous: Mapping[str, Any],
    generation: int,
    desired: PinnedBundle | None,
    desired_uris: tuple[str, str],
    now: datetime,
    history_limit: int,
    steps: Sequence[CohortStep] = (),
) -> dict[str, Any]:
    """The whole new ``status``: what a user reads in ``kubectl get av`` and ``describe``."""
    before_pods = {p.get("name"): p for p in previous.get("pods") or []}
    pods = []
    for report in result.pods:
        old = before_pods.get(report.name) or {}
        same = old.get("state") == report.state and old.get("modelVersion") == report.model_version
        entry: dict[str, Any] = {
            "name": report.name,
            "state": report.state,
            "since": old.get("since") if same and old.get("since") else iso(now),
        }
        if report.ip:
            entry["ip"] = report.ip
        if report.model_version:
            entry["modelVersion"] = report.model_version
        if report.features_version:
            entry["featuresVersion"] = report.features_version
        if report.error:
            entry["lastError"] = report.error[:1000]
        pods.append(entry)
    history = list(previous.get("history") or []) + [history_to_json(h) for h in result.history]
    desired_doc = bundle_to_json(desired) or {
        "modelUri": desired_uris[0],
        "featuresUri": desired_uris[1],
    }
    return {
        "observedGeneration": generation,
        "updated": f"{result.updated}/{result.selected}",
        "conditions": conditions_to_json(
            result.conditions, previous.get("conditions") or [], generation, now
        ),
        "desired": desired_doc,
        "lastGood": bundle_to_json(result.last_good),
        "rollout": rollout_to_json(result.rollout, steps),
        "pods": pods,
        "counts": {
            "selected": result.selected,
            "ready": sum(1 for r in result.pods if r.state not in ("NotReady", "Unreachable")),
            "updated": result.updated,
            "failed": sum(1 for r in result.pods if r.state == "Failed"),
            "unreachable": sum(1 for r in result.pods if r.state == "Unreachable"),
        },
        "history": history[-history_limit:],
    }
