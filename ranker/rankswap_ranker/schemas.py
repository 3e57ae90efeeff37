"""Request and response bodies of the ranker's HTTP API (public and admin)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_ID = 2**31 - 1
TOP_K_LIMIT = 1000
"""Hard upper bound of ``top_k`` in the schema; the configured ``top_k_max`` is usually lower."""


class ExpenseContext(BaseModel):
    """The expense being filed."""

    model_config = ConfigDict(extra="forbid")

    employee_id: int | None = Field(None, ge=0, le=MAX_ID, description="Employee filing it.")
    vendor_id: int | None = Field(None, ge=0, le=MAX_ID, description="Vendor, when known.")
    description: str = Field("", max_length=2000, description="Free text the user entered.")
    amount: float = Field(ge=0, le=1e12, allow_inf_nan=False, description="Amount (yen).")
    date: dt.date = Field(description="Expense date (YYYY-MM-DD).")


class RankRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
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


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. unknown_tenant.")
    message: str = Field(description="What went wrong and what to do, for people.")
    detail: Any = None


class BundleSpec(BaseModel):
    """The bundle the pod must serve: a model and a features artifact URI."""

    model_config = ConfigDict(
        extra="forbid",
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


class BundleAccepted(BaseModel):
    request_id: int = Field(description="Matches ``desired.request_id`` in the state.")
    model_uri: str
    features_uri: str
    state_url: str = "/admin/v1/state"
