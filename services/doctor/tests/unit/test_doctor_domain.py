"""Doctor profile rules without I/O: licence decisions, normalisation, search visibility."""

from __future__ import annotations

import pytest

from healthflow.common.errors import Conflict
from healthflow.doctor import domain
from healthflow.doctor.domain import DoctorStatus as S
from healthflow.doctor.domain import HospitalFacts


@pytest.mark.parametrize("target", [S.VERIFIED, S.REJECTED])
def test_pending_licence_is_decided(target: S) -> None:
    assert domain.decide(S.PENDING, target) is target


@pytest.mark.parametrize(
    ("current", "target"),
    [(S.VERIFIED, S.VERIFIED), (S.VERIFIED, S.REJECTED), (S.REJECTED, S.VERIFIED),
     (S.REJECTED, S.REJECTED)],
)
def test_decided_licence_is_not_decided_again(current: S, target: S) -> None:
    with pytest.raises(Conflict):
        domain.decide(current.value, target)


def test_changed_licence_returns_to_pending() -> None:
    assert domain.status_after_licence_change("verified", True) is S.PENDING
    assert domain.status_after_licence_change("rejected", True) is S.PENDING
    assert domain.status_after_licence_change("verified", False) is S.VERIFIED


def test_name_keys_and_prefix_ranges() -> None:
    assert domain.name_keys("Anna-Lena", "von WEBER") == [
        "anna-lena", "anna", "lena", "von", "weber"]
    low, high = domain.prefix_range(" WEB") or ("", "")
    assert (low, high) == ("web", "wec")
    assert low <= "weber" < high and not (low <= "wec" < high)
    assert domain.prefix_range("   ") is None


def test_language_tags() -> None:
    assert domain.canonical_language_tag("EN-gb") == "en-GB"
    assert domain.canonical_language_tag("zh-hant-tw") == "zh-Hant-TW"
    assert domain.language_keys(["en-GB", "de"]) == ["en-gb", "en", "de"]


def test_search_fields_only_count_verified_hospitals() -> None:
    hospitals = {
        "h1": HospitalFacts("h1", True, "One", "Berlin", "Europe/Berlin"),
        "h2": HospitalFacts("h2", False, "Two", "Munich", "Europe/Berlin"),
    }
    both = [{"hospital_id": "h1", "department_id": "d1"},
            {"hospital_id": "h2", "department_id": "d2"}]
    fields = domain.search_fields("verified", both, hospitals)
    assert fields == {"searchable": True, "search_hospitals": ["h1"],
                      "search_departments": ["d1"], "search_cities": ["berlin"]}
    assert not domain.search_fields("pending", both, hospitals)["searchable"]
    assert not domain.search_fields("verified", both[1:], hospitals)["searchable"]
    assert not domain.search_fields("verified", [{"hospital_id": "unknown"}], hospitals)[
        "searchable"]


def test_location_bookable() -> None:
    hospitals = {"h1": HospitalFacts("h1", True, "One", "Berlin", "Europe/Berlin"),
                 "h2": HospitalFacts("h2", False, "Two", "Munich", "Europe/Berlin")}
    assert domain.location_bookable("hospital:h1", doctor_verified=True, hospitals=hospitals)
    assert not domain.location_bookable("hospital:h2", doctor_verified=True, hospitals=hospitals)
    assert not domain.location_bookable("hospital:h1", doctor_verified=False,
                                        hospitals=hospitals)
    assert domain.location_bookable("online", doctor_verified=True, hospitals=hospitals)
    assert not domain.location_bookable("online", doctor_verified=True,
                                        hospitals={"h2": hospitals["h2"]})
