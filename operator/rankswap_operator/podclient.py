"""The operator's side of a ranker pod's admin API: push a bundle, read the pod's state back."""

from __future__ import annotations

from typing import Any

import httpx

from rankswap_operator.errors import PodUnreachable
from rankswap_operator.plan import AdminState, Bundle


def admin_state_from_json(doc: dict[str, Any]) -> AdminState:
    """Read the ranker's ``GET /admin/v1/state`` document into what the planner needs.

    ``active`` is set by the ranker only while every live worker serves the same bundle; the pod
    is *converged* when that holds and no worker is missing. The load error counts only when the
    pod's latest request failed (``desired.status == "failed"``): an older failure is not news.
    """
    desired = doc.get("desired") or {}
    desired_uris = (
        (str(desired["model_uri"]), str(desired["features_uri"]))
        if desired.get("model_uri") and desired.get("features_uri")
        else None
    )
    workers = doc.get("workers") or []
    live = [w for w in workers if w.get("alive", True)]
    expected = int(doc.get("workers_expected") or len(workers))
    active = _versions(doc.get("active"))
    converged = active is not None and len(live) == expected > 0
    status = desired.get("status")
    error: str | None = None
    if status == "failed":
        last = doc.get("last_error") or {}
        error = (
            f"{last.get('type', 'Error')}: {last.get('message', 'load failed')}"
            if isinstance(last, dict)
            else str(last)
        )
    return AdminState(
        desired_uris=desired_uris,
        active_versions=active,
        converged=converged,
        loading=status in ("loading", "pending") or bool(doc.get("loading")),
        error=error,
        warm_versions=tuple(v for v in (_versions(x) for x in doc.get("warm") or []) if v),
    )


def _versions(bundle: Any) -> tuple[str, str] | None:
    if not isinstance(bundle, dict):
        return None
    model, features = bundle.get("model") or {}, bundle.get("features") or {}
    if model.get("version") and features.get("version"):
        return (str(model["version"]), str(features["version"]))
    return None


class PodClient:
    """Calls one pod's admin API. Every failure to reach it becomes :class:`PodUnreachable`."""

    def __init__(self, client: httpx.AsyncClient, token: str | None) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def state(self, ip: str, port: int) -> AdminState:
        doc = await self._call("GET", f"http://{ip}:{port}/admin/v1/state")
        return admin_state_from_json(doc)

    async def push(self, ip: str, port: int, bundle: Bundle, refresh_interval_s: int) -> None:
        await self._call(
            "PUT",
            f"http://{ip}:{port}/admin/v1/bundle",
            json={
                "model_uri": bundle.model_uri,
                "features_uri": bundle.features_uri,
                "refresh_interval_s": refresh_interval_s,
            },
        )

    async def _call(
        self, method: str, url: str, json: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            response = await self._client.request(method, url, json=json, headers=self._headers)
        except httpx.HTTPError as exc:
            raise PodUnreachable(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise PodUnreachable(
                f"{method} {url}: HTTP {response.status_code}: {response.text[:300]}"
            )
        body = response.json() if response.content else {}
        return body if isinstance(body, dict) else {}
