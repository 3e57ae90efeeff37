"""kopf handlers: thin glue between the cluster and :func:`rankswap_operator.plan.plan`.

One daemon per ArtifactVersion runs the reconcile loop: gather (spec, pods from the pod index,
each pod's admin state, the artifacts' manifests), plan, push, write status and Events, then
sleep briefly while a rollout is in flight and longer once settled (the periodic drift check).
Pod events and spec changes wake the loop at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

import httpx
import kopf
from prometheus_client import CollectorRegistry

from rankswap_operator import kube, startup
from rankswap_operator.errors import (
    AdminTokenUnavailable,
    InvalidSpec,
    KubeError,
    OperatorError,
    PodUnreachable,
    StoreUnavailable,
)
from rankswap_operator.metrics import OperatorMetrics, serve
from rankswap_operator.plan import (
    PinnedBundle,
    Plan,
    PodObservation,
    TargetProblem,
    plan,
    plan_blocked,
    retry_delay,
)
from rankswap_operator.podclient import PodClient
from rankswap_operator.resolve import resolve_target
from rankswap_operator.settings import OperatorSettings
from rankswap_operator.spec import AVSpec, Selector, parse_spec
from rankswap_operator.status import (
    bundle_from_json,
    conditions_to_json,
    good_before,
    rollout_from_json,
    status_from_plan,
)

GROUP, VERSION, PLURAL = kube.GROUP, kube.VERSION, kube.PLURAL


@dataclass(frozen=True)
class PodRecord:
    """What the pod index keeps of each pod."""

    name: str
    labels: tuple[tuple[str, str], ...]
    ip: str | None
    running: bool
    ready: bool
    deleting: bool


@dataclass
class Shared:
    """What every handler shares, kept in kopf's memo as ``memo.shared`` (kopf copies the memo
    per resource; this object, like its containers, stays one)."""

    config: OperatorSettings
    http: httpx.AsyncClient
    metrics: OperatorMetrics
    wakeups: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    """Per resource: set to run its reconcile pass now (a pod or the spec changed)."""
    selectors: dict[tuple[str, str], Selector] = field(default_factory=dict)
    """Per resource: the pod selector of its last valid spec."""
    startup_written: dict[tuple[str, str], str] = field(default_factory=dict)
    """Per resource: the content of its start-up ConfigMap as last written (startup.publish)."""


def shared(memo: kopf.Memo) -> Shared:
    return cast(Shared, memo.shared)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorSettings = memo.get("config") or OperatorSettings()
    metrics: OperatorMetrics | None = memo.get("metrics")
    if metrics is None:
        metrics = OperatorMetrics(CollectorRegistry())
        if config.metrics_port is not None:
            serve(metrics, "0.0.0.0", config.metrics_port)
    memo.shared = Shared(
        config=config, http=httpx.AsyncClient(timeout=config.pod_timeout_s), metrics=metrics
    )
    # A watch can hang silently: bound each request on both sides, and re-open it.
    settings.watching.server_timeout = config.watch_server_timeout_s
    settings.watching.client_timeout = config.watch_client_timeout_s
    settings.watching.connect_timeout = 10
    settings.networking.error_backoffs = [1, 2, 5, 10]
    # Events are posted explicitly (kopf.event), once each; no log line becomes an Event
    # (otherwise every warning we log next to its Event would be posted twice).
    settings.posting.level = logging.CRITICAL + 1
    settings.persistence.finalizer = "rankswap.io/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="rankswap.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="rankswap.io")
    kube.load_config()


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    state: Shared | None = memo.get("shared")
    if state is not None:
        await state.http.aclose()


@kopf.index("pods")
def pods_by_namespace(
    namespace: str | None,
    name: str,
    labels: kopf.Labels,
    status: kopf.Status,
    meta: kopf.Meta,
    **_: Any,
) -> dict[str | None, PodRecord]:
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return {
        namespace: PodRecord(
            name=name,
            labels=tuple(sorted(labels.items())),
            ip=status.get("podIP") or None,
            running=status.get("phase") == "Running",
            ready=conditions.get("Ready") == "True",
            deleting=bool(meta.get("deletionTimestamp")),
        )
    }


def _wake(memo: kopf.Memo, keys: Iterable[tuple[str, str]]) -> None:
    for key in keys:
        event = shared(memo).wakeups.get(key)
        if event is not None:
            event.set()


@kopf.on.event("pods")
def pod_changed(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    state: Shared | None = memo.get("shared")
    selectors = state.selectors if state is not None else {}
    _wake(
        memo, [key for key, sel in selectors.items() if key[0] == namespace and sel.matches(labels)]
    )


@kopf.on.event(GROUP, VERSION, PLURAL)
def resource_changed(
    namespace: str | None,
    name: str,
    meta: kopf.Meta,
    status: kopf.Status,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    if namespace and meta.get("generation") != status.get("observedGeneration"):
        _wake(memo, [(namespace, name)])


# kopf passes indexes as extra keyword arguments, which its callback protocol cannot express.
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)  # type: ignore[arg-type]
async def reconcile_loop(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    pods_by_namespace: kopf.Index[str | None, PodRecord],
    logger: kopf.Logger,
    **_: Any,
) -> None:
    state = shared(memo)
    config = state.config
    if namespace is None:  # ArtifactVersion is namespaced; kopf types allow cluster scope
        raise kopf.PermanentError("ArtifactVersion must be namespaced")
    key = (namespace, name)
    wake = state.wakeups.setdefault(key, asyncio.Event())
    failures = 0  # consecutive passes that could not plan: retried with a back-off
    try:
        while not stopped:
            wake.clear()
            try:
                outcome = await reconcile(
                    body, namespace, name, pods_by_namespace.get(namespace, []), state, logger
                )
            except OperatorError as exc:
                logger.warning(f"reconcile: {exc}")
                outcome = "retry"
            except Exception:
                logger.exception("reconcile failed unexpectedly; retrying")
                outcome = "retry"
            failures = failures + 1 if outcome == "retry" else 0
            if outcome == "retry":
                interval = retry_delay(
                    failures, config.busy_interval_s, config.retry_max_interval_s
                )
            else:
                interval = config.busy_interval_s if outcome == "busy" else config.idle_interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=interval)
    finally:
        state.metrics.forget(namespace, name)
        state.wakeups.pop(key, None)
        state.selectors.pop(key, None)
        state.startup_written.pop(key, None)


Outcome = Literal["busy", "idle", "retry", "wait"]
"""After a pass: a rollout is in flight (``busy``), settled (``idle``), a temporary error
stopped it (``retry``, with back-off), or a permanent one did (``wait`` for a spec change,
checked at the idle interval)."""


async def reconcile(
    body: kopf.Body,
    namespace: str,
    name: str,
    pod_records: Iterable[PodRecord],
    state: Shared,
    logger: kopf.Logger,
) -> Outcome:
    """One pass: gather, plan, push, write status and Events."""
    config = state.config
    now = datetime.now(UTC).replace(microsecond=0)
    generation = int(body.meta.get("generation") or 0)
    previous: Mapping[str, Any] = dict(body.status)
    try:
        spec = parse_spec(body.spec)
        state.selectors[(namespace, name)] = spec.selector
        resolved = await asyncio.to_thread(resolve_target, spec.model_uri, spec.features_uri)
        token = config.admin_token
        if spec.token_secret:
            token = await kube.read_token(namespace, spec.token_secret, spec.token_key)
    except (InvalidSpec, StoreUnavailable, AdminTokenUnavailable) as exc:
        await _write_blocked(state, body, namespace, name, generation, previous, now, exc)
        return "retry" if exc.temporary else "wait"
    target = resolved if isinstance(resolved, PinnedBundle) else None
    problem = resolved if isinstance(resolved, TargetProblem) else None

    pods_client = PodClient(state.http, token)
    selected = sorted(
        (p for p in pod_records if not p.deleting and spec.selector.matches(dict(p.labels))),
        key=lambda p: p.name,
    )
    observations = await asyncio.gather(*(_observe(pods_client, p, spec) for p in selected))

    result = plan(
        spec=spec,
        generation=generation,
        target=target,
        target_problem=problem,
        last_good=bundle_from_json(previous.get("lastGood")),
        rollout=rollout_from_json(previous.get("rollout")),
        pods=observations,
        now=now,
        good_before=good_before(previous),
    )
    push_results = await asyncio.gather(
        *(
            pods_client.push(
                p.ip, spec.admin_port, p.bundle, spec.refresh_interval_seconds, p.cohort
            )
            for p in result.pushes
        ),
        return_exceptions=True,
    )
    for push, outcome in zip(result.pushes, push_results, strict=True):
        if isinstance(outcome, BaseException):
            logger.warning(f"push to {push.pod} failed: {outcome}")
            kopf.event(body, type="Warning", reason="PushFailed", message=f"{push.pod}: {outcome}")
            state.metrics.record_event(namespace, name, "Warning", "PushFailed")
    for event in result.events:
        (logger.warning if event.type == "Warning" else logger.info)(
            f"{event.reason}: {event.message}"
        )
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        state.metrics.record_event(namespace, name, event.type, event.reason)

    new_status = status_from_plan(
        result,
        previous=previous,
        generation=generation,
        desired=target,
        desired_uris=(spec.model_uri, spec.features_uri),
        now=now,
        history_limit=config.history_limit,
        steps=spec.rollout.steps,
    )
    await kube.patch_status(namespace, name, kube.merge_patch(previous, new_status))
    state.metrics.record_status(namespace, name, new_status)
    await _publish_startup(state, body, namespace, name, generation, target, result, now, logger)
    in_flight = not result.settled or any(
        p.state in ("Loading", "Pending", "Unreachable") for p in result.pods
    )
    return "busy" if in_flight else "idle"


async def _publish_startup(
    state: Shared,
    body: kopf.Body,
    namespace: str,
    name: str,
    generation: int,
    target: PinnedBundle | None,
    result: Plan,
    now: datetime,
    logger: kopf.Logger,
) -> None:
    """Keep the start-up ConfigMap in step with the plan; a failed write is logged and tried
    again next pass (it never stops a rollout)."""
    doc = startup.startup_document(
        namespace=namespace,
        name=name,
        generation=generation,
        desired=target,
        last_good=result.last_good,
        phase=result.rollout.phase if result.rollout else None,
        now=now,
    )
    try:
        uid = str(body.meta.get("uid") or "")
        if await startup.publish(state.startup_written, namespace, name, uid, doc):
            good = result.last_good.label() if result.last_good else "none yet"
            logger.info(f"start-up ConfigMap {startup.configmap_name(name)}: last good {good}")
    except KubeError as exc:
        logger.warning(f"start-up ConfigMap not written: {exc}")


async def _observe(client: PodClient, pod: PodRecord, spec: AVSpec) -> PodObservation:
    if not pod.running or not pod.ip:
        return PodObservation(pod.name, pod.ip, False, pod.ready, None)
    try:
        admin = await client.state(pod.ip, spec.admin_port)
    except PodUnreachable as exc:
        return PodObservation(pod.name, pod.ip, True, pod.ready, None, unreachable_reason=str(exc))
    return PodObservation(pod.name, pod.ip, True, pod.ready, admin)


async def _write_blocked(
    state: Shared,
    body: kopf.Body,
    namespace: str,
    name: str,
    generation: int,
    previous: Mapping[str, Any],
    now: datetime,
    error: OperatorError,
) -> None:
    old = {c.get("type"): c.get("reason") for c in previous.get("conditions") or []}
    blocked = plan_blocked(error, old.get("Degraded"))
    for event in blocked.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        state.metrics.record_event(namespace, name, event.type, event.reason)
    new = dict(previous)
    new["observedGeneration"] = generation
    new["conditions"] = conditions_to_json(
        blocked.conditions, previous.get("conditions") or [], generation, now
    )
    await kube.patch_status(namespace, name, kube.merge_patch(previous, new))
    state.metrics.record_status(namespace, name, new)


def registry() -> kopf.OperatorRegistry:
    """The handlers of this module (kopf registers them on import, in its default registry)."""
    return kopf.get_default_registry()
