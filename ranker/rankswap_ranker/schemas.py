"""Request and response bodies of the ranker's HTTP API (public and admin).

Request bodies are strict: a number must be a JSON number (``"2480"`` and ``true`` are refused),
an integer a JSON number without a fraction (``12`` or, as JSON Schema has it, ``12.0``; not
``12.5``, ``"12"`` or ``true``), a date a ``YYYY-MM-DD`` string (``0`` is not 1970-01-01), and
unknown fields are refused.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from rankswap.cohorts import CohortAssignment

MAX_ID = 2**31 - 1
TOP_K_LIMIT = 1000
"""Outer bound of ``top_k`` (and of the ``top_k_max`` setting); each app's OpenAPI document states
the configured ``top_k_max`` instead (:func:`rankswap_ranker.openapi.state_top_k_bound`)."""

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_date(value: Any) -> Any:
    """Only a ``YYYY-MM-DD`` string is a date (pydantic alone also takes 0, "0", datetimes)."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("must be a date string YYYY-MM-DD")
    return dt.date.fromisoformat(value)  # ValueError for 2026-02-30


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]


def _json_integer(value: Any) -> Any:
    """JSON Schema's integer: ``12.0`` is one (a generated client may send it); the strict
    validator then refuses what is not (``12.5``, ``"12"``, ``true``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class ExpenseContext(BaseModel):
    """The expense being filed."""

    model_config = ConfigDict(extra="forbid", strict=True)

    employee_id: int | None = Field(None, ge=0, le=MAX_ID, description="Employee filing it.")
    vendor_id: int | None = Field(None, ge=0, le=MAX_ID, description="Vendor, when known.")
    description: str = Field("", max_length=2000, description="Free text the user entered.")
    amount: float = Field(ge=0, le=1e12, allow_inf_nan=False, description="Amount (yen).")
    date: IsoDate = Field(description="Expense date (YYYY-MM-DD).")

    # A validator of the model, not an Annotated one: that would hide ge/le from the schema.
    _integral = field_validator("employee_id", "vendor_id", mode="before")(_json_integer)


class RankRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "t0001",
                    "context": {
                        "employee_id": 12,
                        "vendor_id": 40,
                        "description": "タクシー 渋谷→品川",
                        "amount": 2480,
                        "date": "2026-11-27",
                    },
                    "top_k": 5,
                }
            ]
        },
    )

    tenant_id: str = Field(min_length=1, max_length=128, description="Tenant whose items rank.")
    context: ExpenseContext
    top_k: int | None = Field(
        None,
        ge=1,
        le=TOP_K_LIMIT,
        description="How many items to return (default and maximum are configured; 5 and 100 "
        "unless set otherwise).",
    )

    _integral = field_validator("top_k", mode="before")(_json_integer)


class RankedItem(BaseModel):
    id: int
    code: str
    name: str
    category: str
    score: float


class RankResponse(BaseModel):
    tenant_id: str
    items: list[RankedItem] = Field(description="Best first; empty when the tenant has no items.")
    candidates: int = Field(description="How many active items were scored.")
    bundle_id: str
    model_version: str
    features_version: str


class Health(BaseModel):
    status: str = Field(description="Always ``ok`` while the process answers.")


class WorkerReadiness(BaseModel):
    slot: int | None
    bundle_id: str | None = Field(description="The worker's active bundle, if any.")


class Readiness(BaseModel):
    ready: bool
    bundle_id: str | None = Field(description="This worker's active bundle, if any.")
    workers: list[WorkerReadiness]


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. unknown_tenant.")
    message: str = Field(description="What went wrong and what to do, for people.")
    detail: Any = None


class CohortSpec(CohortAssignment):
    """A tenant canary's cohort: these tenants are served by this bundle instead of the pod's
    own (which stays every other tenant's). Tenants listed and/or a stable hash ``percent``."""

    model_uri: str = Field(min_length=1, max_length=2048)
    features_uri: str = Field(min_length=1, max_length=2048)

    def assignment(self) -> CohortAssignment:
        return CohortAssignment(tenants=list(self.tenants), percent=self.percent)


class BundleSpec(BaseModel):
    """The bundle the pod must serve: a model and a features artifact URI; during a tenant
    canary also the cohort bundle and the tenants it serves."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "model_uri": "s3://artifacts/rankswap/models/ranker/2026-11-23",
                    "features_uri": "s3://artifacts/rankswap/features/1.0.0/latest",
                }
            ]
        },
    )

    model_uri: str = Field(min_length=1, max_length=2048)
    features_uri: str = Field(min_length=1, max_length=2048)
    refresh_interval_s: float | None = Field(
        None,
        gt=0,
        le=86400,
        description="How often to poll a latest/ URI of this bundle (default: the pod's "
        "RANKSWAP_REFRESH_INTERVAL_S). Ignored for dated URIs.",
    )
    cohort: CohortSpec | None = Field(
        None,
        description="A tenant canary: the cohort's tenants are served by the cohort bundle, "
        "every other tenant by this bundle. Null: this bundle serves every tenant.",
    )


class BundleAccepted(BaseModel):
    request_id: int = Field(description="Matches ``desired.request_id`` in the state.")
    model_uri: str
    features_uri: str
    state_url: str = "/admin/v1/state"
