"""Tenant cohorts: which tenants a pod serves with the cohort bundle instead of its own.

A :class:`CohortAssignment` names tenants and/or a stable hash share of all tenants. The
operator builds one per step of a ``TenantCanary`` rollout and sends it with the bundle; the
ranker routes each request by it. Shared by both (pure, no NumPy), so they agree on who is in.

The hash is keyed BLAKE2b of the tenant id's UTF-8 bytes (:func:`tenant_bucket`): the same in
every pod, worker and restart (not Python's per-process ``hash``), and the same for every
rollout, so a cohort widens monotonically: a tenant inside 10 % is inside 50 %.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
"""A tenant id in a cohort list: 1-128 characters, letters, digits and ``._:-``, not starting
with punctuation."""
MAX_COHORT_TENANTS = 200
"""The longest tenant list of a cohort (200 ids of 128 characters are ~26 KB, inside the admin
port's 64 KiB body limit)."""
BUCKETS = 10000
"""Hash buckets (basis points): ``percent`` P takes the buckets below ``P * 100``."""
_HASH_KEY = b"rankswap.cohort.v1"

TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]


@functools.lru_cache(maxsize=65536)
def tenant_bucket(tenant_id: str) -> int:
    """The tenant's hash bucket, ``0 <= bucket < BUCKETS``, stable everywhere (memoised: a
    pod sees the same tenants again and again)."""
    digest = hashlib.blake2b(tenant_id.encode("utf-8"), digest_size=8, key=_HASH_KEY).digest()
    return int.from_bytes(digest, "big") % BUCKETS


class CohortAssignment(BaseModel):
    """Tenants served by the cohort bundle: those listed, and those whose hash bucket falls in
    the first ``percent`` % (hostile input: bounded, validated, strict)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        # What the validator below checks, stated in the schema (clients and fuzzers see it).
        json_schema_extra={
            "anyOf": [
                {"required": ["tenants"], "properties": {"tenants": {"minItems": 1}}},
                {"required": ["percent"], "properties": {"percent": {"minimum": 1}}},
            ]
        },
    )

    tenants: list[TenantId] = Field(
        default_factory=list,
        max_length=MAX_COHORT_TENANTS,
        description=f"Tenant ids served by the cohort bundle (at most {MAX_COHORT_TENANTS}).",
    )
    percent: int = Field(
        0, ge=0, le=100, description="Share of all tenants, by a stable hash of the tenant id."
    )

    @field_validator("percent", mode="before")
    @classmethod
    def _json_integer(cls, value: object) -> object:
        """JSON Schema's integer: ``10.0`` is one (a generated client may send it)."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @field_validator("tenants")
    @classmethod
    def _sorted(cls, tenants: list[str]) -> list[str]:
        return sorted(set(tenants))

    @model_validator(mode="after")
    def _not_empty(self) -> CohortAssignment:
        if not self.tenants and self.percent == 0:
            raise ValueError("a cohort needs tenants or a percent above 0")
        return self

    def __hash__(self) -> int:
        return hash((self.percent, *self.tenants))

    def contains(self, tenant_id: str) -> bool:
        """The tenant is served by the cohort bundle."""
        return tenant_id in self.members()

    def members(self) -> Members:
        """The assignment as a fast membership test (what a request path holds on to)."""
        return Members(self)

    @property
    def fingerprint(self) -> str:
        """A short digest of the assignment (the same tenants and percent, the same value): the
        shadow comparison is accumulated per fingerprint, so each step is judged on its own."""
        doc = json.dumps({"percent": self.percent, "tenants": self.tenants}, sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:12]

    def describe(self) -> str:
        parts = []
        if self.tenants:
            shown = ", ".join(self.tenants[:3]) + (", ..." if len(self.tenants) > 3 else "")
            parts.append(f"{len(self.tenants)} tenant(s) [{shown}]")
        if self.percent:
            parts.append(f"{self.percent}% of tenants")
        return " + ".join(parts)


class Members:
    """``tenant_id in members``: one set lookup, then (with a percent) one memoised hash."""

    __slots__ = ("_tenants", "_threshold")

    def __init__(self, assignment: CohortAssignment) -> None:
        self._tenants = frozenset(assignment.tenants)
        self._threshold = assignment.percent * (BUCKETS // 100)

    def __contains__(self, tenant_id: object) -> bool:
        if not isinstance(tenant_id, str):
            return False
        if tenant_id in self._tenants:
            return True
        return self._threshold > 0 and tenant_bucket(tenant_id) < self._threshold
