"""The ranker's OpenAPI document: the public API and the admin API (each on its own port).

``python -m rankswap_ranker.openapi`` rewrites docs/openapi-ranker.json; a test checks that the
checked-in file is current. Each running port also serves its own half: ``/openapi.json``
(public) and ``/admin/v1/openapi.json`` (admin).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rankswap.podstate import PodState
from rankswap_ranker.schemas import CohortSpec
from rankswap_ranker.settings import RankerSettings

DOC_PATH = Path("docs") / "openapi-ranker.json"


class _SchemaOnly:
    """Backend of the admin app when it is built only to describe itself."""

    def request_bundle(
        self,
        model_uri: str,
        features_uri: str,
        refresh_interval_s: float | None,
        cohort: CohortSpec | None = None,
    ) -> int:
        raise NotImplementedError

    def state(self) -> PodState:
        raise NotImplementedError


def state_top_k_bound(doc: dict[str, Any], top_k_default: int, top_k_max: int) -> dict[str, Any]:
    """``doc`` with ``RankRequest.top_k`` bounded by the configured maximum, which the server
    enforces (the model's static bound is only the outer limit of that setting)."""
    top_k = doc["components"]["schemas"]["RankRequest"]["properties"]["top_k"]
    for branch in top_k.get("anyOf", [top_k]):
        if branch.get("type") == "integer":
            branch["maximum"] = top_k_max
    top_k["description"] = (
        f"How many items to return: {top_k_default} when absent or null, at most {top_k_max} "
        "(RANKSWAP_TOP_K_DEFAULT, RANKSWAP_TOP_K_MAX)."
    )
    return doc


def document() -> dict[str, Any]:
    from rankswap_ranker.admin import create_admin_app
    from rankswap_ranker.app import create_app
    from rankswap_ranker.candidates import LazyProductDB
    from rankswap_ranker.registry import BundleRegistry

    settings = RankerSettings(allowed_roots=[])
    public = create_app(settings, BundleRegistry(), LazyProductDB("sqlite:///unused.db")).openapi()
    admin = create_admin_app(settings, _SchemaOnly()).openapi()
    doc = dict(public)
    doc["info"] = {
        "title": "rankswap ranker",
        "version": "1",
        "description": (
            "Public port (RANKSWAP_PUBLIC_PORT, 8080): /v1/rank, /healthz, /readyz, /metrics. "
            "Admin port (RANKSWAP_ADMIN_PORT, 8081): /admin/v1/*, bearer token required "
            "(its document, /admin/v1/openapi.json, is served without the token: it holds no "
            "secret and is this published file). Every error of both ports is the ErrorBody "
            "envelope; bodies over the port's limit are answered 413 before they are read."
        ),
    }
    doc["paths"] = {**public["paths"], **admin["paths"]}
    schemas = {**public.get("components", {}).get("schemas", {})}
    schemas.update(admin.get("components", {}).get("schemas", {}))
    doc["components"] = {
        "schemas": dict(sorted(schemas.items())),
        "securitySchemes": admin.get("components", {}).get("securitySchemes", {}),
    }
    return doc


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else DOC_PATH
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
