"""The care plan state machine alone (FHIR R4 ``CarePlan.status``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from healthflow.common.problems import UnprocessableContent
from healthflow.records.domain import (
    PLAN_TRANSITIONS,
    Authored,
    EntryStatus,
    EntryWithdrawn,
    PlanStateConflict,
    PlanStatus,
    ResourceType,
    VersionConflict,
    first_version,
    plan_transition,
)

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ENCOUNTER = {"_id": "e1", "patient_id": "p1"}


def plan(status: PlanStatus = PlanStatus.DRAFT) -> dict:
    head, _ = first_version("cp1", ENCOUNTER, ResourceType.CARE_PLAN,
                            {"title": "Plan", "status": status.value}, Authored("d1", T0))
    return head


def test_draft_active_completed_each_a_version_with_who_and_when() -> None:
    later = T0 + timedelta(days=1)
    active, v2 = plan_transition(plan(), PlanStatus.ACTIVE, expected_version=1,
                                 authored=Authored("d2", later))
    assert (active["version"], active["content"]["status"], active["updated_by"]) == (
        2, "active", "d2")
    assert v2["_id"] == "cp1:2" and v2["at"] == later and v2["reason"] is None
    done, _ = plan_transition(active, PlanStatus.COMPLETED, expected_version=2,
                              authored=Authored("d2", later))
    assert done["content"] == {"title": "Plan", "status": "completed"}


@pytest.mark.parametrize(("start", "target"), [
    (s, t) for s in PlanStatus for t in PlanStatus if t not in PLAN_TRANSITIONS[s]])
def test_every_other_move_is_a_conflict(start: PlanStatus, target: PlanStatus) -> None:
    with pytest.raises(PlanStateConflict):
        plan_transition(plan(start), target, expected_version=1,
                        authored=Authored("d1", T0, "why"))


def test_revoking_needs_a_reason_and_stale_or_withdrawn_plans_do_not_move() -> None:
    with pytest.raises(UnprocessableContent):
        plan_transition(plan(), PlanStatus.REVOKED, expected_version=1,
                        authored=Authored("d1", T0, "  "))
    revoked, _ = plan_transition(plan(), PlanStatus.REVOKED, expected_version=1,
                                 authored=Authored("d1", T0, "patient declined"))
    assert revoked["content"]["status"] == "revoked"
    with pytest.raises(VersionConflict):
        plan_transition(plan(), PlanStatus.ACTIVE, expected_version=2,
                        authored=Authored("d1", T0))
    withdrawn = {**plan(), "status": EntryStatus.ENTERED_IN_ERROR.value}
    with pytest.raises(EntryWithdrawn):
        plan_transition(withdrawn, PlanStatus.ACTIVE, expected_version=1,
                        authored=Authored("d1", T0))
