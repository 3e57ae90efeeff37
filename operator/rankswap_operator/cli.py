"""``rankswap operator`` and the thin kubectl-like helpers ``promote``, ``rollback``, ``status``.

kubectl stays the primary interface; these helpers only save typing the URIs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import date
from typing import Any

from rankswap.settings import from_flags
from rankswap_operator.settings import OperatorSettings

log = logging.getLogger("rankswap.operator")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser(
        "operator",
        help="run the ArtifactVersion operator (kopf)",
        description="Watch ArtifactVersion resources and push their bundles to the selected ranker pods. "
        "Settings: RANKSWAP_OPERATOR_* environment variables (see operator/rankswap_operator/settings.py); "
        "a flag given wins over its variable, which wins over the default.",
    )
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="namespace to watch (repeatable; RANKSWAP_OPERATOR_NAMESPACES, a JSON list)",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (the default when no namespace is set)",
    )
    run.add_argument(
        "--liveness",
        default=None,
        help="liveness endpoint URL (RANKSWAP_OPERATOR_LIVENESS_ENDPOINT, "
        "default http://0.0.0.0:8080/healthz)",
    )
    run.add_argument(
        "--peering",
        action="store_true",
        help="use kopf peering (several operator replicas); default standalone",
    )
    run.set_defaults(func=_run_operator)

    promote = subparsers.add_parser(
        "promote",
        help="point an ArtifactVersion at new model/features URIs",
        description="Patch spec.model.uri and/or spec.features.uri of an ArtifactVersion (same as kubectl apply of an edited spec).",
    )
    promote.add_argument("name", help="ArtifactVersion name")
    promote.add_argument("-n", "--namespace", default="default")
    promote.add_argument(
        "--model-uri", help="new model URI (<root>/models/<name>/<YYYY-MM-DD|latest>)"
    )
    promote.add_argument(
        "--features-uri", help="new features URI (<root>/features/<schema>/<YYYY-MM-DD|latest>)"
    )
    promote.set_defaults(func=_promote)

    rollback = subparsers.add_parser(
        "rollback",
        help="point an ArtifactVersion at the dated versions of an earlier day",
        description="Rewrite both URIs of an ArtifactVersion to the dated path of --to (same root and names). "
        "A pod that still holds that bundle warm switches at once.",
    )
    rollback.add_argument("name", help="ArtifactVersion name")
    rollback.add_argument("-n", "--namespace", default="default")
    rollback.add_argument(
        "--to", required=True, type=date.fromisoformat, help="the day to return to, YYYY-MM-DD"
    )
    rollback.set_defaults(func=_rollback)

    status = subparsers.add_parser(
        "status", help="show an ArtifactVersion's rollout, per-pod versions and history"
    )
    status.add_argument("name", help="ArtifactVersion name")
    status.add_argument("-n", "--namespace", default="default")
    status.set_defaults(func=_status)


def settings_from_args(args: argparse.Namespace) -> OperatorSettings:
    """The operator's settings: a flag given > ``RANKSWAP_OPERATOR_*`` > default.

    ``-n`` gives the namespaces and ``-A`` gives "every namespace" (an empty list), so either
    flag wins over ``RANKSWAP_OPERATOR_NAMESPACES``; ``--liveness`` over
    ``RANKSWAP_OPERATOR_LIVENESS_ENDPOINT``."""
    namespaces: list[str] | None = [] if args.all_namespaces else (args.namespace or None)
    return from_flags(OperatorSettings, namespaces=namespaces, liveness_endpoint=args.liveness)


def _run_operator(args: argparse.Namespace) -> int:
    import kopf

    from rankswap_operator import handlers

    config = settings_from_args(args)
    namespaces = config.namespaces
    log.info(
        "starting operator",
        extra={"ctx": {"namespaces": namespaces or "all", "settings": config.model_dump()}},
    )
    memo = kopf.Memo(config=config)
    asyncio.run(
        kopf.operator(
            registry=handlers.registry(),
            memo=memo,
            standalone=not args.peering,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=config.liveness_endpoint,
        )
    )
    return 0


def _resource_api() -> Any:
    from kubernetes import client

    from rankswap_operator import kube

    kube.load_config()
    return client.CustomObjectsApi()


def _get(api: Any, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    from rankswap_operator import kube
    from rankswap_operator.errors import KubeError

    try:
        obj: dict[str, Any] = api.get_namespaced_custom_object(
            kube.GROUP, kube.VERSION, namespace, kube.PLURAL, name
        )
    except ApiException as exc:
        raise KubeError(f"ArtifactVersion {namespace}/{name}: {exc.status} {exc.reason}") from exc
    return obj


def _patch_spec(api: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    from kubernetes.client.exceptions import ApiException

    from rankswap_operator import kube
    from rankswap_operator.errors import KubeError

    try:
        api.patch_namespaced_custom_object(
            kube.GROUP, kube.VERSION, namespace, kube.PLURAL, name, {"spec": spec}
        )
    except ApiException as exc:
        raise KubeError(
            f"ArtifactVersion {namespace}/{name} refused the change: {exc.status} {exc.body}"
        ) from exc


def _promote(args: argparse.Namespace) -> int:
    from rankswap_operator.errors import InvalidSpec

    if not args.model_uri and not args.features_uri:
        raise InvalidSpec("nothing to promote: give --model-uri and/or --features-uri")
    patch: dict[str, Any] = {}
    if args.model_uri:
        patch["model"] = {"uri": args.model_uri}
    if args.features_uri:
        patch["features"] = {"uri": args.features_uri}
    _patch_spec(_resource_api(), args.namespace, args.name, patch)
    print(
        f"artifactversion.rankswap.io/{args.name} promoted; watch it with: kubectl get av {args.name} -n {args.namespace} -w"
    )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from rankswap.artifacts import artifact_uri, parse_artifact_uri

    api = _resource_api()
    spec = _get(api, args.namespace, args.name)["spec"]
    model = parse_artifact_uri(spec["model"]["uri"])
    features = parse_artifact_uri(spec["features"]["uri"])
    patch = {
        "model": {"uri": artifact_uri(str(model.root), "model", model.name, args.to)},
        "features": {"uri": artifact_uri(str(features.root), "features", features.name, args.to)},
    }
    _patch_spec(api, args.namespace, args.name, patch)
    print(f"artifactversion.rankswap.io/{args.name} rolled back to {args.to.isoformat()}")
    print(f"  model:    {patch['model']['uri']}\n  features: {patch['features']['uri']}")
    return 0


def _status(args: argparse.Namespace) -> int:
    obj = _get(_resource_api(), args.namespace, args.name)
    print(format_status(obj))
    return 0


def format_status(obj: dict[str, Any]) -> str:
    """A human summary of one ArtifactVersion: what kubectl get + describe would show, compact."""
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    lines = [
        f"{obj['metadata']['namespace']}/{obj['metadata']['name']}  generation {obj['metadata'].get('generation')}"
        f" (observed {status.get('observedGeneration', '-')})"
    ]
    lines.append(f"  spec     model    {spec.get('model', {}).get('uri')}")
    lines.append(f"           features {spec.get('features', {}).get('uri')}")
    desired, good = status.get("desired") or {}, status.get("lastGood") or {}
    lines.append(
        f"  desired  {desired.get('modelVersion', '?')} + {desired.get('featuresVersion', '?')}"
    )
    lines.append(f"  lastGood {good.get('modelVersion', '-')} + {good.get('featuresVersion', '-')}")
    for cond in status.get("conditions") or []:
        lines.append(
            f"  {cond['type']:<11} {cond['status']:<7} {cond.get('reason', '')}: {cond.get('message', '')}"
        )
    lines.append(f"  pods ({status.get('updated', '0/0')} updated)")
    for pod in status.get("pods") or []:
        lines.append(
            f"    {pod['name']:<24} {pod.get('ip', '-'):<15} {pod.get('state', '?'):<11} "
            f"{pod.get('modelVersion', '-')} + {pod.get('featuresVersion', '-')}"
            + (f"  error: {pod['lastError']}" if pod.get("lastError") else "")
        )
    if status.get("history"):
        lines.append("  history")
        for entry in status["history"][-5:]:
            lines.append(
                f"    gen {entry.get('generation')}: {entry.get('outcome'):<10} {entry.get('modelVersion')} + "
                f"{entry.get('featuresVersion')}  {entry.get('finishedAt', '')}  {entry.get('message', '')}"
            )
    return "\n".join(lines)
