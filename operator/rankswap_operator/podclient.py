"""The operator's side of a ranker pod's admin API: push a bundle, read the pod's state back."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError

from rankswap.podstate import PodState
from rankswap_operator.errors import PodUnreachable
from rankswap_operator.plan import AdminState, CohortTarget, PinnedBundle


def admin_state_from_json(doc: Any) -> AdminState:
    """Parse the ranker's ``GET /admin/v1/state`` document (:class:`rankswap.podstate.PodState`)
    into what the planner needs; a document that is not one raises :class:`PodUnreachable`."""
    try:
        state = PodState.model_validate(doc)
    except ValidationError as exc:
        raise PodUnreachable(f"the pod's state is not a ranker state document: {exc}") from exc
    return admin_state(state)


def admin_state(state: PodState) -> AdminState:
    """What the planner needs from a pod's state.

    ``converged`` is the ranker's own (:func:`rankswap.podstate.pod_converged`: every expected
    worker alive, serving the target, at the current desired ``seq``). The load error counts
    only when the pod's latest request failed (``desired.status == "failed"``): an older
    failure is not news.
    """
    desired = state.desired
    status = desired.status if desired is not None else None
    error: str | None = None
    if status == "failed":
        last = state.last_error
        error = f"{last.type}: {last.message}" if last is not None else "Error: load failed"
    return AdminState(
        desired_uris=(desired.model_uri, desired.features_uri) if desired is not None else None,
        active_versions=state.active.versions if state.active is not None else None,
        converged=state.converged,
        loading=status in ("loading", "pending") or state.loading is not None,
        error=error,
        warm_versions=tuple(b.versions for b in state.warm),
        comparisons=tuple(state.shadow),
        desired_cohort=(
            (
                (desired.cohort.model_uri, desired.cohort.features_uri),
                desired.cohort.assignment.fingerprint,
            )
            if desired is not None and desired.cohort is not None
            else None
        ),
        cohort=(
            (state.cohort.bundle.versions, state.cohort.fingerprint)
            if state.cohort is not None
            else None
        ),
    )


def push_body(
    bundle: PinnedBundle, refresh_interval_s: int, cohort: CohortTarget | None
) -> dict[str, Any]:
    """The ``PUT /admin/v1/bundle`` body (the ranker's ``BundleSpec``)."""
    body: dict[str, Any] = {
        "model_uri": bundle.model_uri,
        "features_uri": bundle.features_uri,
        "refresh_interval_s": refresh_interval_s,
    }
    if cohort is not None:
        body["cohort"] = {
            "model_uri": cohort.bundle.model_uri,
            "features_uri": cohort.bundle.features_uri,
            **cohort.assignment.model_dump(mode="json"),
        }
    return body


class PodClient:
    """Calls one pod's admin API. Every failure to reach it becomes :class:`PodUnreachable`."""

    def __init__(self, client: httpx.AsyncClient, token: str | None) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def state(self, ip: str, port: int) -> AdminState:
        doc = await self._call("GET", f"http://{ip}:{port}/admin/v1/state")
        try:
            return admin_state_from_json(doc)
        except PodUnreachable as exc:
            raise PodUnreachable(f"GET http://{ip}:{port}/admin/v1/state: {exc}") from exc

    async def push(
        self,
        ip: str,
        port: int,
        bundle: PinnedBundle,
        refresh_interval_s: int,
        cohort: CohortTarget | None = None,
    ) -> None:
        await self._call(
            "PUT",
            f"http://{ip}:{port}/admin/v1/bundle",
            json=push_body(bundle, refresh_interval_s, cohort),
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
