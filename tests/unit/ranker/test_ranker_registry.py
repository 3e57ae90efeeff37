"""Swap semantics: one reference swap, previous bundles warm, requests keep their bundle."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from rankswap_ranker.errors import NoActiveBundle
from rankswap_ranker.registry import BundleRegistry

pytestmark = pytest.mark.timeout(10)


@dataclass(eq=False)
class B:
    bundle_id: str


def test_no_bundle_raises_no_active_bundle() -> None:
    reg: BundleRegistry[B] = BundleRegistry(1)
    with pytest.raises(NoActiveBundle):
        reg.current()


def test_activate_keeps_previous_warm_up_to_capacity() -> None:
    reg: BundleRegistry[B] = BundleRegistry(2)
    a, b, c, d = B("a"), B("b"), B("c"), B("d")
    assert reg.activate(a).previous is None
    reg.activate(b)
    reg.activate(c)
    assert reg.current() is c
    assert reg.warm_ids() == ["b", "a"]
    swap = reg.activate(d)
    assert swap.dropped == ("a",)
    assert reg.warm_ids() == ["c", "b"]


def test_switch_back_to_warm_is_a_pointer_swap_and_a_rollback() -> None:
    reg: BundleRegistry[B] = BundleRegistry(1)
    a, b = B("a"), B("b")
    reg.activate(a)
    reg.activate(b)
    swap = reg.activate_warm("a")
    assert swap is not None and swap.rollback
    assert reg.current() is a  # the very same object: nothing was reloaded
    assert reg.warm_ids() == ["b"]
    assert reg.activate_warm("zzz") is None


def test_activate_warm_of_the_active_bundle_is_a_no_op() -> None:
    reg: BundleRegistry[B] = BundleRegistry(1)
    reg.activate(B("a"))
    swap = reg.activate_warm("a")
    assert swap is not None and not swap.rollback


def test_zero_warm_capacity_drops_the_previous_bundle() -> None:
    reg: BundleRegistry[B] = BundleRegistry(0)
    reg.activate(B("a"))
    assert reg.activate(B("b")).dropped == ("a",)
    assert reg.warm_ids() == []


def test_a_request_keeps_the_bundle_it_started_with() -> None:
    reg: BundleRegistry[B] = BundleRegistry(0)
    old = B("old")
    reg.activate(old)
    in_flight = reg.current()  # a request starts
    reg.activate(B("new"))  # a swap happens meanwhile; "old" is dropped from the registry
    assert in_flight is old  # the request still holds a live reference to its bundle
    assert reg.current().bundle_id == "new"


def test_reactivating_the_same_bundle_does_not_warm_it_twice() -> None:
    reg: BundleRegistry[B] = BundleRegistry(2)
    a = B("a")
    reg.activate(a)
    reg.activate(a)
    assert reg.warm_ids() == []
