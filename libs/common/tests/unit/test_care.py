"""The care-relationship rule (FHIR CareTeam status and period), pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from healthflow.common.care import CareStatus, care_ends, in_care

T = datetime(2027, 3, 1, 9, tzinfo=UTC)
AFTER = timedelta(days=90)


def relationship(status: CareStatus = CareStatus.ACTIVE, end: datetime | None = None,
                 finished: datetime | None = None) -> dict[str, object]:
    return {"status": status.value, "period": {"start": T, "end": end},
            "encounter_finished_at": finished, "as_of": end or finished or T}


def test_an_open_relationship_has_no_end() -> None:
    assert care_ends(relationship(), AFTER) is None
    assert in_care(relationship(), T + timedelta(days=3650), AFTER)


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
