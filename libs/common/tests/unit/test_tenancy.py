"""Where a caller's ``*_any`` permissions reach (healthflow.common.tenancy.Reach; no I/O)."""

from __future__ import annotations

from healthflow.common.tenancy import PLATFORM_ROLES, Reach


def test_a_hospital_wide_membership_covers_every_department_of_its_hospital() -> None:
    reach = Reach(platform=False, hospitals=frozenset({"a"}))
    assert reach.covers("a") and reach.covers("a", "cardiology")
    assert not reach.covers("b") and not reach.covers("b", "cardiology")
    assert not reach.covers(None)  # a resource of no hospital is the platform's


def test_a_department_membership_covers_its_department_and_the_hospitals_own() -> None:
    reach = Reach(platform=False, departments=frozenset({("a", "cardiology")}))
    assert reach.covers("a", "cardiology") and reach.covers("a")
    assert not reach.covers("a", "neurology")
    assert reach.member_of == {"a"}
    assert reach.covers_any(["b", "a"]) and not reach.covers_any(["b", "c"])
    assert not reach.covers_any([])


def test_the_platform_reaches_everything_and_only_admins_and_compliance_are_it() -> None:
    everything = Reach(platform=True)
    assert everything.covers(None) and everything.covers_any([])
    assert {"admin", "compliance_officer"} == PLATFORM_ROLES
    assert not Reach(platform=False).covers_any(["a"])
