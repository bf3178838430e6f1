"""The emergency rules alone: the triage table and the lifecycle."""

from __future__ import annotations

from itertools import pairwise

import pytest

from healthflow.common.problems import UnprocessableContent
from healthflow.emergency.domain import (
    NEXT,
    Priority,
    Status,
    StatusOutOfOrder,
    Triage,
    check_step,
    triage,
)

CALM = dict(conscious=True, breathing_normally=True, severe_bleeding=False,
            chest_pain_or_stroke_signs=False, major_trauma=False, can_walk=True)


@pytest.mark.parametrize(("answers", "priority"), [
    ({"conscious": False}, Priority.P1),
    ({"breathing_normally": False}, Priority.P1),
    ({"breathing_normally": False, "severe_bleeding": True}, Priority.P1),  # first row wins
    ({"severe_bleeding": True}, Priority.P2),
    ({"chest_pain_or_stroke_signs": True, "major_trauma": True}, Priority.P2),
    ({"major_trauma": True}, Priority.P3),
    ({"can_walk": False}, Priority.P3),
    ({}, Priority.P4),
])
def test_triage_follows_the_rule_table_first_match_wins(answers: dict[str, bool],
                                                        priority: Priority) -> None:
    assert triage(Triage(**(CALM | answers))) is priority


LIFECYCLE = [Status.ASSIGNED, Status.EN_ROUTE, Status.ON_SCENE, Status.TRANSPORTING,
             Status.AT_HOSPITAL, Status.CLOSED]


def test_the_whole_lifecycle_is_a_sequence_of_allowed_steps() -> None:
    for current, target in pairwise(LIFECYCLE):
        check_step(current, target, accepted=True, reason=None)
    check_step(Status.ON_SCENE, Status.CLOSED, accepted=True, reason=None)  # treated on scene


@pytest.mark.parametrize(("current", "target"), [
    (Status.RAISED, Status.EN_ROUTE),  # nobody is assigned
    (Status.ASSIGNED, Status.ON_SCENE),  # skips en route
    (Status.EN_ROUTE, Status.ASSIGNED),  # backwards
    (Status.ON_SCENE, Status.AT_HOSPITAL),  # skips transporting
    (Status.EN_ROUTE, Status.EN_ROUTE),  # the same again
    (Status.CLOSED, Status.EN_ROUTE),
    (Status.CANCELLED, Status.CLOSED),
    (Status.RAISED, Status.ASSIGNED),  # the system's step, never a person's
])
def test_steps_out_of_order_are_conflicts(current: Status, target: Status) -> None:
    with pytest.raises(StatusOutOfOrder):
        check_step(current, target, accepted=True, reason=None)


def test_an_unaccepted_offer_does_not_set_off() -> None:
    with pytest.raises(StatusOutOfOrder, match="not accepted"):
        check_step(Status.ASSIGNED, Status.EN_ROUTE, accepted=False, reason=None)


def test_cancelling_needs_a_reason_and_an_open_emergency() -> None:
    check_step(Status.EN_ROUTE, Status.CANCELLED, accepted=True, reason="caller recovered")
    with pytest.raises(UnprocessableContent):
        check_step(Status.RAISED, Status.CANCELLED, accepted=False, reason="  ")
    for done in (Status.TRANSPORTING, Status.AT_HOSPITAL, Status.CLOSED, Status.CANCELLED):
        with pytest.raises(StatusOutOfOrder):
            check_step(done, Status.CANCELLED, accepted=True, reason="x")


def test_no_step_leaves_a_final_status() -> None:
    assert Status.CLOSED not in NEXT and Status.CANCELLED not in NEXT
