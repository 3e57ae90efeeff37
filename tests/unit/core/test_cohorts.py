"""The cohort assignment: stable hash buckets, widening shares, bounded and validated input."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from rankswap.cohorts import MAX_COHORT_TENANTS, CohortAssignment, tenant_bucket

pytestmark = pytest.mark.timeout(30)

TENANTS = [f"t{i:04d}" for i in range(2000)]


def test_the_bucket_is_pinned_and_the_same_in_another_process_with_another_hash_seed() -> None:
    # Pinned: a change of the hash would move tenants between cohorts of a running canary.
    assert [tenant_bucket(t) for t in ("t0001", "acme", "テナント")] == PINNED
    code = "from rankswap.cohorts import tenant_bucket; print(tenant_bucket('t0001'))"
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        )
        assert int(out.stdout) == PINNED[0]


PINNED = [3737, 1209, 4276]


def test_a_percent_takes_about_that_share_and_a_wider_one_keeps_everyone_in() -> None:
    ten = {t for t in TENANTS if CohortAssignment(percent=10).contains(t)}
    fifty = {t for t in TENANTS if CohortAssignment(percent=50).contains(t)}
    assert 150 <= len(ten) <= 250 and 900 <= len(fifty) <= 1100
    assert ten <= fifty, "widening never moves a tenant out"
    assert all(CohortAssignment(percent=100).contains(t) for t in TENANTS)


def test_listed_tenants_are_in_whatever_their_bucket() -> None:
    cohort = CohortAssignment(tenants=["t0001", "t0002"])
    assert cohort.contains("t0001") and cohort.contains("t0002")
    assert not cohort.contains("t0003") and not cohort.contains("t00011")


def test_the_fingerprint_ignores_order_and_duplicates_and_changes_with_the_cohort() -> None:
    a = CohortAssignment(tenants=["b", "a", "a"], percent=10)
    b = CohortAssignment(tenants=["a", "b"], percent=10)
    assert a == b and a.fingerprint == b.fingerprint and a.tenants == ["a", "b"]
    assert CohortAssignment(tenants=["a", "b"], percent=20).fingerprint != a.fingerprint
    assert CohortAssignment(tenants=["a"], percent=10).fingerprint != a.fingerprint


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"percent": 0},
        {"tenants": []},
        {"percent": 101},
        {"percent": -1},
        {"percent": "10"},
        {"percent": 10.5},
        {"tenants": "t0001"},
        {"tenants": ["ok", "has space"]},
        {"tenants": [".dot"]},
        {"tenants": ["x" * 129]},
        {"tenants": ["t\n1"]},
        {"tenants": [f"t{i}" for i in range(MAX_COHORT_TENANTS + 1)]},
        {"tenants": ["a"], "salt": "x"},
    ],
)
def test_hostile_assignments_are_refused(doc: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CohortAssignment.model_validate(doc)


def test_the_largest_assignment_is_accepted() -> None:
    big = CohortAssignment(tenants=[f"t{i}" for i in range(MAX_COHORT_TENANTS)], percent=100)
    assert len(big.tenants) == MAX_COHORT_TENANTS
