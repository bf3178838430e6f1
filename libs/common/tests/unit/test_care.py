"""The care-relationship rule (FHIR CareTeam status and period), pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from healthflow.common.care import CareStatus, care_ends, in_care

T = datetime(2027, 3, 1, 9, tzinfo=UTC)
AFTER = timedelta(days=90)


def relationship(status: CareStatus = CareStatus.ACTIVE, end: datetime | None = None,
                 finished: datetime | None = None, planned_end: datetime | None = None,
                 as_of: datetime | None = None) -> dict[str, object]:
    return {"status": status.value, "period": {"start": T, "end": end},
            "encounter_finished_at": finished, "planned_end": planned_end,
            "as_of": as_of or end or finished or T}


def test_a_booking_lasts_until_the_period_after_its_planned_end() -> None:
    booked = relationship(planned_end=T + timedelta(days=200))
    assert care_ends(booked, AFTER) == T + timedelta(days=200) + AFTER
    assert in_care(booked, T + timedelta(days=250), AFTER)
    assert not in_care(booked, T + timedelta(days=3650), AFTER)  # never completed


def test_an_unfinished_encounter_lasts_the_period_after_its_newest_event() -> None:
    walk_in = relationship(as_of=T + timedelta(days=10))  # no planned end
    assert care_ends(walk_in, AFTER) == T + timedelta(days=10) + AFTER
    stale_plan = relationship(planned_end=T, as_of=T + timedelta(days=30))
    assert care_ends(stale_plan, AFTER) == T + timedelta(days=30) + AFTER


def test_a_cancellation_ends_it_at_once() -> None:
    cancelled = relationship(CareStatus.INACTIVE, end=T + timedelta(hours=1))
    assert care_ends(cancelled, AFTER) == T + timedelta(hours=1)
    assert in_care(cancelled, T, AFTER) and not in_care(cancelled, T + timedelta(hours=1), AFTER)


def test_a_finished_encounter_keeps_it_for_the_period_only() -> None:
    done = relationship(finished=T)
    assert care_ends(done, AFTER) == T + AFTER
    assert in_care(done, T + AFTER - timedelta(milliseconds=1), AFTER)
    assert not in_care(done, T + AFTER, AFTER)
    assert not in_care(done, T, timedelta(0))
