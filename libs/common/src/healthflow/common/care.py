"""Care relationships in FHIR R4 ``CareTeam`` terms (pure: no I/O): the rule the records
and patient services share for when a doctor's relationship with a patient grants access.

A relationship rests on one appointment (or, in the records service, one walk-in
encounter) and is a mapping with ``status`` (:class:`CareStatus`), ``period``
``{start, end | None}``, ``encounter_finished_at`` (aware UTC or ``None``), ``planned_end``
(the appointment's scheduled end, aware UTC, ``None`` for a walk-in or when unknown) and
``as_of`` (the time of the newest event applied to it). It is ``active`` from the
booking, ``inactive`` from the cancellation (``period.end``, for good); once its
encounter finished, it lasts a configured period after that (judged at read time). One
whose encounter never finishes (a booking never completed, cancelled nor marked a
no-show; a walk-in left open) lasts the same period after the later of its planned end
and its newest event, so an abandoned booking does not grant access for ever.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import Field

from healthflow.common.settings import ServiceSettings

BEFORE_ANY_EVENT = datetime(1970, 1, 1, tzinfo=UTC)
"""``as_of`` of a relationship adopted from an older read model: any appointment event,
however late, applies after it."""


class CareSettings(ServiceSettings):
    """Settings of a service that grants a doctor access by care relationship (records,
    patient, prescription, xray): ``<SERVICE>_CARE_AFTER_ENCOUNTER_DAYS``."""

    care_after_encounter_days: int = Field(default=90, ge=0, le=3650)
    """Days (of 24 h) a relationship outlives its finished encounter (FHIR CareTeam
    ``period.end`` = completion + this; 0 ends it at completion). Judged at read time,
    so a change applies to past encounters too."""

    @property
    def care_period(self) -> timedelta:
        """``care_after_encounter_days`` as a duration."""
        return timedelta(days=self.care_after_encounter_days)


class CareStatus(StrEnum):
    """FHIR R4 ``CareTeam.status`` as HealthFlow uses it: ``active`` from the booking (or
    the walk-in), ``inactive`` once the appointment is cancelled."""

    ACTIVE = "active"
    INACTIVE = "inactive"


def care_ends(relationship: Mapping[str, Any], after_encounter: timedelta) -> datetime:
    """When a care relationship ends (FHIR ``CareTeam.period.end``), aware UTC.

    The cancellation's time for a cancelled one; else the finish of its encounter
    (``encounter_finished_at``) plus ``after_encounter``; while the encounter is not
    finished, ``after_encounter`` after the later of ``planned_end`` (else
    ``period.start``) and ``as_of``.
    """
    ends: datetime
    if relationship["status"] != CareStatus.ACTIVE:
        ends = relationship["period"]["end"] or relationship["as_of"]
    elif relationship.get("encounter_finished_at") is not None:
        ends = relationship["encounter_finished_at"] + after_encounter
    else:
        planned = relationship.get("planned_end") or relationship["period"]["start"]
        ends = max(planned, relationship["as_of"]) + after_encounter
    return ends


def in_care(relationship: Mapping[str, Any], now: datetime, after_encounter: timedelta) -> bool:
    """Whether the relationship grants access at ``now`` (aware UTC): it has not ended."""
    return now < care_ends(relationship, after_encounter)
