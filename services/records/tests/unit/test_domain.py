"""The records service's rules alone: encounter states, entry versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from healthflow.common.problems import UnprocessableContent
from healthflow.records.domain import (
    Authored,
    EncounterClass,
    EncounterOpening,
    EncounterStateConflict,
    EncounterStatus,
    EntryStatus,
    EntryWithdrawn,
    ResourceType,
    VersionConflict,
    accepts_entries,
    class_for_mode,
    first_version,
    new_encounter,
    next_version,
    transition,
)

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def encounter(status: EncounterStatus = EncounterStatus.IN_PROGRESS) -> dict:
    return new_encounter(EncounterOpening(
        encounter_id="e1", patient_id="p1", practitioner_id="d1",
        encounter_class=EncounterClass.AMB, status=status, opened_by="d1", now=T0,
        appointment_id="a1", planned=(T0, T0 + timedelta(minutes=30))))


def test_an_appointment_mode_gives_the_encounter_class() -> None:
    assert class_for_mode("in_person") is EncounterClass.AMB
    assert class_for_mode("online") is EncounterClass.VR


def test_a_planned_encounter_has_no_period_until_it_starts_then_finishes() -> None:
    planned = encounter(EncounterStatus.PLANNED)
    assert planned["period"] == {"start": None, "end": None}
    assert planned["planned"]["start"] == T0
    start = T0 + timedelta(minutes=3)
    fields = transition(planned, EncounterStatus.IN_PROGRESS, start)
    assert fields == {"status": "in-progress", "updated_at": start, "period.start": start}
    started = {**planned, "status": "in-progress", "period": {"start": start, "end": None}}
    end = start + timedelta(minutes=20)
    assert transition(started, EncounterStatus.FINISHED, end)["period.end"] == end


@pytest.mark.parametrize(("status", "target"), [
    (EncounterStatus.PLANNED, EncounterStatus.FINISHED),
    (EncounterStatus.FINISHED, EncounterStatus.IN_PROGRESS),
    (EncounterStatus.CANCELLED, EncounterStatus.IN_PROGRESS),
    (EncounterStatus.IN_PROGRESS, EncounterStatus.CANCELLED),
])
def test_other_transitions_are_refused(status: EncounterStatus,
                                       target: EncounterStatus) -> None:
    with pytest.raises(EncounterStateConflict):
        transition(encounter(status), target, T0)


def test_entries_are_written_once_the_encounter_has_started() -> None:
    accepts_entries(encounter(EncounterStatus.IN_PROGRESS))
    accepts_entries(encounter(EncounterStatus.FINISHED))
    for status in (EncounterStatus.PLANNED, EncounterStatus.CANCELLED):
        with pytest.raises(EncounterStateConflict):
            accepts_entries(encounter(status))


def entry() -> tuple[dict, dict]:
    return first_version("x1", encounter(), ResourceType.CONDITION,
                         {"text": "Sore throat", "note": None}, Authored("d1", T0))


def test_version_one_and_its_history_record() -> None:
    head, version = entry()
    assert head["version"] == 1 and head["status"] == "current"
    assert head["patient_id"] == "p1" and head["encounter_id"] == "e1"
    assert version == {"_id": "x1:1", "entry_id": "x1", "patient_id": "p1", "version": 1,
                       "status": "current", "content": head["content"], "author": "d1",
                       "at": T0, "reason": None}


def test_a_correction_is_a_new_version_and_leaves_the_old_one_as_it_was() -> None:
    head, v1 = entry()
    kept = dict(v1)
    later = T0 + timedelta(hours=1)
    new_head, v2 = next_version(head, expected_version=1, content={"text": "Tonsillitis",
                                                                     "note": None},
                                status=EntryStatus.CURRENT,
                                authored=Authored("d2", later, "culture came back"))
    assert v1 == kept and head["version"] == 1  # nothing overwritten
    assert new_head["version"] == 2 and new_head["content"]["text"] == "Tonsillitis"
    assert new_head["recorded_by"] == "d1" and new_head["updated_by"] == "d2"
    assert v2["_id"] == "x1:2" and v2["reason"] == "culture came back" and v2["author"] == "d2"


def test_withdrawal_keeps_the_content_and_ends_the_entry() -> None:
    head, _ = entry()
    withdrawn, v2 = next_version(head, expected_version=1, content=None,
                                 status=EntryStatus.ENTERED_IN_ERROR,
                                 authored=Authored("d1", T0, "wrong patient"))
    assert withdrawn["status"] == v2["status"] == "entered-in-error"
    assert withdrawn["content"] == head["content"]
    with pytest.raises(EntryWithdrawn):
        next_version(withdrawn, expected_version=2, content={"text": "x"},
                     status=EntryStatus.CURRENT, authored=Authored("d1", T0, "oops"))


def test_a_correction_of_a_stale_version_is_a_conflict() -> None:
    head, _ = entry()
    with pytest.raises(VersionConflict) as caught:
        next_version(head, expected_version=2, content={"text": "y"},
                     status=EntryStatus.CURRENT, authored=Authored("d1", T0, "why"))
    assert caught.value.extensions == {"current_version": 1}


@pytest.mark.parametrize(("content", "reason"), [({"text": "y", "note": None}, "  "),
                                                  (None, "same content")])
def test_a_correction_needs_a_reason_and_a_change(content: dict | None, reason: str) -> None:
    head, _ = entry()
    with pytest.raises(UnprocessableContent):
        next_version(head, expected_version=1, content=content, status=EntryStatus.CURRENT,
                     authored=Authored("d1", T0, reason))
