"""The few Kubernetes API calls the operator makes itself (kopf makes the watches).

The official client is synchronous; each call runs in a thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from rankswap_operator.errors import AdminTokenUnavailable, KubeError

GROUP, VERSION, PLURAL = "rankswap.io", "v1alpha1", "artifactversions"


def load_config() -> None:
    """In a pod: the ServiceAccount's identity; elsewhere: KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``old`` into ``new`` (keys that disappear are set to null)."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before:
            patch[key] = value
    return patch


async def patch_status(namespace: str, name: str, patch: Mapping[str, Any]) -> None:
    if not patch:
        return

    def call() -> None:
        client.CustomObjectsApi().patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": dict(patch)}
        )

    try:
        await asyncio.to_thread(call)
    except ApiException as exc:
        if exc.status == 404:
            return  # deleted meanwhile
        raise KubeError(
            f"could not write status of {namespace}/{name}: {exc.status} {exc.reason}"
        ) from exc


async def read_token(namespace: str, secret: str, key: str) -> str:
    def call() -> Any:
        return client.CoreV1Api().read_namespaced_secret(secret, namespace)

    try:
        obj = await asyncio.to_thread(call)
    except ApiException as exc:
        if exc.status in (403, 404):
            raise AdminTokenUnavailable(
                f"admin token Secret {namespace}/{secret}: {exc.reason} (does it exist, and may the operator read it?)"
            ) from exc
        raise KubeError(f"reading Secret {namespace}/{secret}: {exc.status} {exc.reason}") from exc
    data = (obj.data or {}).get(key)
    if not data:
        raise AdminTokenUnavailable(f"admin token Secret {namespace}/{secret} has no key {key!r}")
    return base64.b64decode(data).decode().strip()


def _kube_error(action: str, exc: ApiException) -> KubeError:
    hint = " (may the operator's ServiceAccount do that? see its RBAC)" if exc.status == 403 else ""
    return KubeError(f"{action}: {exc.status} {exc.reason}{hint}")


async def read_config_map(
    namespace: str, name: str
) -> tuple[dict[str, str], list[dict[str, Any]]] | None:
    """A ConfigMap's data and owner references, or None when there is none."""

    def call() -> Any:
        return client.CoreV1Api().read_namespaced_config_map(name, namespace)

    try:
        obj = await asyncio.to_thread(call)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _kube_error(f"reading ConfigMap {namespace}/{name}", exc) from exc
    owners = [o.to_dict() for o in (obj.metadata.owner_references or [])]
    return dict(obj.data or {}), owners


async def create_config_map(namespace: str, body: Mapping[str, Any]) -> None:
    doc: Any = dict(body)  # the client takes a plain dict for its V1ConfigMap

    def call() -> None:
        client.CoreV1Api().create_namespaced_config_map(namespace, doc)

    try:
        await asyncio.to_thread(call)
    except ApiException as exc:
        raise _kube_error(
            f"creating ConfigMap {namespace}/{body['metadata']['name']}", exc
        ) from exc


async def patch_config_map(namespace: str, name: str, patch: Mapping[str, Any]) -> None:
    def call() -> None:
        client.CoreV1Api().patch_namespaced_config_map(name, namespace, dict(patch))

    try:
        await asyncio.to_thread(call)
    except ApiException as exc:
        raise _kube_error(f"updating ConfigMap {namespace}/{name}", exc) from exc
