"""The paramedic rules alone: distances, position times, assignability, duty status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from healthflow.common.problems import UnprocessableContent
from healthflow.paramedic.domain import (
    DutyStatus,
    EtaThrottle,
    StalePosition,
    UnitBusy,
    assignable,
    check_reported_at,
    haversine_m,
    point,
    self_status_change,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
AGE = timedelta(seconds=120)
SKEW = timedelta(seconds=30)


def test_haversine_matches_known_distances() -> None:
    # Helsinki Central Station → Helsinki Cathedral: about 590 m.
    assert haversine_m(60.1710, 24.9414, 60.1703, 24.9522) == pytest.approx(600, abs=15)
    # One degree of latitude is about 111.2 km on the mean sphere.
    assert haversine_m(0, 0, 1, 0) == pytest.approx(111_195, rel=1e-4)
    # Across the antimeridian: 0.2 degrees of longitude at the equator, not 359.8.
    assert haversine_m(0, 179.9, 0, -179.9) == pytest.approx(22_239, rel=1e-3)
    assert haversine_m(60.17, 24.94, 60.17, 24.94) == 0.0


def test_points_are_geojson_longitude_first() -> None:
    assert point(60.17, 24.94) == {"type": "Point", "coordinates": [24.94, 60.17]}


def test_reported_times_must_be_recent_and_not_in_the_future() -> None:
    check_reported_at(NOW - timedelta(seconds=119), NOW, max_age=AGE, max_skew=SKEW)
    check_reported_at(NOW + timedelta(seconds=29), NOW, max_age=AGE, max_skew=SKEW)
    for bad in (NOW - timedelta(seconds=121), NOW + timedelta(seconds=31),
                datetime(2026, 11, 30, 12, 0)):
        with pytest.raises(StalePosition):
            check_reported_at(bad, NOW, max_age=AGE, max_skew=SKEW)


def test_only_available_units_with_fresh_positions_are_assignable() -> None:
    fresh, stale = NOW - timedelta(seconds=60), NOW - timedelta(seconds=121)
    assert assignable(DutyStatus.AVAILABLE, fresh, NOW, AGE)
    assert not assignable(DutyStatus.AVAILABLE, stale, NOW, AGE)
    assert not assignable(DutyStatus.AVAILABLE, None, NOW, AGE)
    assert not assignable(DutyStatus.ASSIGNED, fresh, NOW, AGE)
    assert not assignable(DutyStatus.OFF_DUTY, fresh, NOW, AGE)


def test_a_paramedic_sets_only_off_duty_or_available_and_not_on_a_task() -> None:
    self_status_change(DutyStatus.OFF_DUTY, DutyStatus.AVAILABLE)
    self_status_change(DutyStatus.AVAILABLE, DutyStatus.OFF_DUTY)
    with pytest.raises(UnitBusy):
        self_status_change(DutyStatus.EN_ROUTE, DutyStatus.AVAILABLE)
    with pytest.raises(UnprocessableContent):
        self_status_change(DutyStatus.AVAILABLE, DutyStatus.ON_SCENE)


def test_only_later_crew_steps_or_the_end_move_a_task() -> None:
    from healthflow.paramedic.domain import steps_forward

    assert steps_forward("assigned", "en_route") and steps_forward("en_route", "closed")
    assert not steps_forward("on_scene", "en_route")  # a late delivery
    assert not steps_forward("on_scene", "on_scene") and not steps_forward("closed", "on_scene")
    assert not steps_forward("en_route", "raised")  # the system's, not the crew's
    assert not steps_forward("cancelled", "closed")


def test_an_eta_is_published_on_a_large_enough_change_or_after_the_interval() -> None:
    throttle = EtaThrottle(change_s=30, change_ratio=0.2, interval_s=30)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    last = {"travel_s": 600.0, "reported_at": at}
    assert throttle.due(None, 600, at)
    assert not throttle.due(last, 500, at + timedelta(seconds=10))  # 100 s < 20 % of 600
    assert throttle.due(last, 479, at + timedelta(seconds=10))
    assert not throttle.due(last, 610, at + timedelta(seconds=29))
    assert throttle.due(last, 600, at + timedelta(seconds=30))
    assert throttle.due({"travel_s": 60.0, "reported_at": at}, 29, at + timedelta(seconds=1))
    assert not throttle.due(last, 100, at)  # not newer than the last published
