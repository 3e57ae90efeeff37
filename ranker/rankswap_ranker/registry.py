"""The bundles of one process: the active one, and the previous ones kept warm.

A request calls :meth:`BundleRegistry.current` once at its start and keeps that reference to
its end; a swap assigns one attribute, so a request never sees a half-loaded bundle, and a
bundle in use stays alive (reference counting) until its last request is done. Swaps are
serialised by a lock (there is one loader per process anyway); readers take no lock.

During a tenant canary the registry also holds a *cohort*: a second bundle and the
:class:`~rankswap.cohorts.CohortAssignment` of the tenants it serves; :meth:`for_tenant` is the
one per-request choice. The cohort is one immutable attribute too, and a change that moves the
cohort bundle to active (the canary completed) first makes it active, then drops the cohort,
so a cohort tenant never sees the previous bundle in between.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from rankswap.cohorts import CohortAssignment, Members
from rankswap_ranker.errors import NoActiveBundle


class HasBundleId(Protocol):
    @property
    def bundle_id(self) -> str: ...


B = TypeVar("B", bound=HasBundleId)


@dataclass(frozen=True)
class Cohort(Generic[B]):
    """A bundle and the tenants it serves instead of the active bundle."""

    bundle: B
    assignment: CohortAssignment
    members: Members = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", self.assignment.members())


@dataclass(frozen=True)
class Swap:
    """What one activation did: ``rollback`` is True when the bundle came from the warm set."""

    previous: str | None
    current: str
    rollback: bool
    dropped: tuple[str, ...]


class BundleRegistry(Generic[B]):
    def __init__(self, warm_capacity: int = 1) -> None:
        if warm_capacity < 0:
            raise ValueError("warm_capacity must be >= 0")
        self._warm_capacity = warm_capacity
        self._active: B | None = None
        self._cohort: Cohort[B] | None = None
        self._warm: OrderedDict[str, B] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    @property
    def active(self) -> B | None:
        return self._active

    def current(self) -> B:
        """The bundle a request must use to its end; NoActiveBundle before the first load."""
        bundle = self._active
        if bundle is None:
            raise NoActiveBundle("no bundle is loaded yet; the ranker is waiting for one")
        return bundle

    @property
    def cohort(self) -> Cohort[B] | None:
        return self._cohort

    def for_tenant(self, tenant_id: str) -> B:
        """The bundle a request of ``tenant_id`` must use to its end: the cohort's bundle when
        the tenant is in the cohort, else :meth:`current`."""
        cohort = self._cohort
        if cohort is not None and tenant_id in cohort.members:
            return cohort.bundle
        return self.current()

    def warm_ids(self) -> list[str]:
        """Warm bundle ids, most recent first."""
        return list(reversed(self._warm))

    def warm_bundles(self) -> list[B]:
        """Warm bundles, most recent first."""
        return list(reversed(self._warm.values()))

    def has(self, bundle_id: str) -> bool:
        active, cohort = self._active, self._cohort
        return (
            (active is not None and active.bundle_id == bundle_id)
            or (cohort is not None and cohort.bundle.bundle_id == bundle_id)
            or bundle_id in self._warm
        )

    def take_warm(self, bundle_id: str) -> B | None:
        """The loaded bundle ``bundle_id`` (warm, active or the cohort's), to serve as a cohort
        bundle without loading it again; None when it is not loaded."""
        with self._lock:
            active, cohort = self._active, self._cohort
            if active is not None and active.bundle_id == bundle_id:
                return active
            if cohort is not None and cohort.bundle.bundle_id == bundle_id:
                return cohort.bundle
            return self._warm.get(bundle_id)

    def set_cohort(self, bundle: B | None, assignment: CohortAssignment | None = None) -> None:
        """Serve ``assignment``'s tenants with ``bundle`` (None: every tenant with the active
        bundle). The bundle leaves the warm set; a cohort bundle no longer used turns warm."""
        with self._lock:
            old = self._cohort
            if bundle is None or assignment is None:
                self._cohort = None
            else:
                self._warm.pop(bundle.bundle_id, None)
                self._cohort = Cohort(bundle, assignment)
            active = self._active
            if (
                old is not None
                and (bundle is None or old.bundle.bundle_id != bundle.bundle_id)
                and (active is None or active.bundle_id != old.bundle.bundle_id)
            ):
                self._warm[old.bundle.bundle_id] = old.bundle
                self._trim_locked()

    def activate(self, bundle: B) -> Swap:
        """Make ``bundle`` (freshly loaded and validated) active; the previous one turns warm."""
        with self._lock:
            self._warm.pop(bundle.bundle_id, None)
            return self._swap_locked(bundle, rollback=False)

    def activate_warm(self, bundle_id: str) -> Swap | None:
        """Switch back to a warm bundle by pointer swap; None when it is not warm."""
        with self._lock:
            active = self._active
            if active is not None and active.bundle_id == bundle_id:
                return Swap(bundle_id, bundle_id, rollback=False, dropped=())
            cohort = self._cohort
            if cohort is not None and cohort.bundle.bundle_id == bundle_id:
                bundle: B | None = cohort.bundle  # the cohort's bundle becomes everyone's
            else:
                bundle = self._warm.pop(bundle_id, None)
            if bundle is None:
                return None
            return self._swap_locked(bundle, rollback=True)

    def _swap_locked(self, bundle: B, *, rollback: bool) -> Swap:
        previous = self._active
        self._active = bundle  # the swap: one reference assignment
        if previous is not None and previous.bundle_id != bundle.bundle_id:
            self._warm[previous.bundle_id] = previous
        dropped = self._trim_locked()
        return Swap(
            previous=previous.bundle_id if previous is not None else None,
            current=bundle.bundle_id,
            rollback=rollback,
            dropped=tuple(dropped),
        )

    def _trim_locked(self) -> list[str]:
        cohort = self._cohort
        if cohort is not None:
            self._warm.pop(cohort.bundle.bundle_id, None)
        dropped: list[str] = []
        while len(self._warm) > self._warm_capacity:
            old_id, _ = self._warm.popitem(last=False)
            dropped.append(old_id)
        return dropped
