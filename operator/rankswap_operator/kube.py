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
