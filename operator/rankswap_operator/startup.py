"""The start-up ConfigMap: the desired and the last good bundle, for pods that start alone.

Per ArtifactVersion the operator keeps a ConfigMap ``<name>-startup`` (:func:`configmap_name`)
in the resource's namespace, owned by the resource (so it is garbage-collected with it), whose
``startup.json`` is a :class:`rankswap.podstate.StartupDocument`. The chart's ranker Deployment
mounts it (``optional: true``); a pod that starts with no bundle loads the last good bundle it
names (``rankswap_ranker.startup``), so it becomes ready while the operator is down, with no
API-server permission of its own. The operator still verifies every pod and pushes it the
desired bundle when that differs.

The builders are pure; :func:`publish` writes only when the bundles or the phase changed
(``writtenAt`` alone is no change), and remembers what it wrote so that a settled resource
costs no API call per pass.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, MutableMapping
from datetime import datetime
from typing import Any

from rankswap.podstate import STARTUP_FILE, PinnedRef, StartupDocument
from rankswap_operator import kube
from rankswap_operator.plan import Phase, PinnedBundle

SUFFIX = "-startup"
MANAGED_BY = "rankswap-operator"
MAX_NAME = 253


def configmap_name(av_name: str) -> str:
    """``<av name>-startup``; an AV name too long for that keeps its first characters and
    gains a hash of the whole name (still unique, still a DNS subdomain)."""
    name = f"{av_name}{SUFFIX}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(av_name.encode()).hexdigest()[:10]
    return f"{av_name[: MAX_NAME - len(SUFFIX) - 11].rstrip('.-')}-{digest}{SUFFIX}"


def _ref(bundle: PinnedBundle | None) -> PinnedRef | None:
    if bundle is None:
        return None
    return PinnedRef(
        model_uri=bundle.model_uri,
        features_uri=bundle.features_uri,
        model_version=bundle.model_version,
        features_version=bundle.features_version,
    )


def startup_document(
    *,
    namespace: str,
    name: str,
    generation: int,
    desired: PinnedBundle | None,
    last_good: PinnedBundle | None,
    phase: Phase | None,
    now: datetime,
) -> StartupDocument:
    """The document for one pass: ``desired`` is the resolved spec (None when it cannot be
    resolved), ``last_good`` the plan's last good bundle."""
    return StartupDocument(
        artifact_version=f"{namespace}/{name}",
        generation=generation,
        rollout_phase=phase,
        desired=_ref(desired),
        last_good=_ref(last_good),
        written_at=now.isoformat().replace("+00:00", "Z"),
    )


def _content(doc: StartupDocument) -> str:
    """What decides whether the ConfigMap must be written (all but ``written_at``)."""
    return json.dumps(doc.model_dump(mode="json", exclude={"written_at"}), sort_keys=True)


def configmap_body(
    namespace: str, av_name: str, av_uid: str, doc: StartupDocument
) -> dict[str, Any]:
    """The whole ConfigMap, owned by the ArtifactVersion."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(av_name),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                "app.kubernetes.io/part-of": "rankswap",
                # A label value has at most 63 characters; a longer name is found by owner.
                **({"rankswap.io/artifactversion": av_name} if len(av_name) <= 63 else {}),
            },
            "ownerReferences": [
                {
                    "apiVersion": f"{kube.GROUP}/{kube.VERSION}",
                    "kind": "ArtifactVersion",
                    "name": av_name,
                    "uid": av_uid,
                    "controller": True,
                }
            ],
        },
        "data": {STARTUP_FILE: doc.model_dump_json(indent=1) + "\n"},
    }


def parse_configmap_data(data: Mapping[str, str] | None) -> StartupDocument | None:
    """The document a ConfigMap holds, or None when it holds none or an unreadable one (the
    operator then writes it again)."""
    text = (data or {}).get(STARTUP_FILE)
    if not text:
        return None
    try:
        return StartupDocument.model_validate_json(text)
    except ValueError:
        return None


async def publish(
    written: MutableMapping[tuple[str, str], str],
    namespace: str,
    av_name: str,
    av_uid: str,
    doc: StartupDocument,
) -> bool:
    """Create or update the ConfigMap when its content differs from ``doc``; True when
    written. ``written`` remembers the content per resource (an operator restart reads the
    ConfigMap once). Raises :class:`~rankswap_operator.errors.KubeError`."""
    key, content = (namespace, av_name), _content(doc)
    if written.get(key) == content:
        return False
    body = configmap_body(namespace, av_name, av_uid, doc)
    name = body["metadata"]["name"]
    live = await kube.read_config_map(namespace, name)
    if live is None:
        await kube.create_config_map(namespace, body)
    else:
        data, owners = live
        current = parse_configmap_data(data)
        owned = any(o.get("uid") == av_uid for o in owners)
        if current is not None and owned and _content(current) == content:
            written[key] = content
            return False
        await kube.patch_config_map(
            namespace,
            name,
            {
                "metadata": {
                    "labels": body["metadata"]["labels"],
                    "ownerReferences": body["metadata"]["ownerReferences"],
                },
                "data": body["data"],
            },
        )
    written[key] = content
    return True
