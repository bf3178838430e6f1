"""Events the teleconference service publishes: its contracts, from
:mod:`healthflow.contracts.teleconference`."""

from __future__ import annotations

from healthflow.common.mongo import Document
from healthflow.contracts.teleconference import (
    RecordingAccessed,
    RecordingAvailable,
    RecordingDeleted,
    TeleconsultEnded,
    TeleconsultGuestInvited,
    TeleconsultParticipantJoined,
    TeleconsultParticipantLeft,
    TeleconsultRecordingConsent,
    TeleconsultRecordingStarted,
    TeleconsultRecordingStopped,
    TeleconsultStarted,
)

__all__ = ["RecordingAccessed", "RecordingAvailable", "RecordingDeleted", "TeleconsultEnded",
           "TeleconsultGuestInvited",
           "TeleconsultParticipantJoined", "TeleconsultParticipantLeft",
           "TeleconsultRecordingConsent", "TeleconsultRecordingStarted",
           "TeleconsultRecordingStopped", "TeleconsultStarted", "ids_of", "subject_of"]


def subject_of(room_id: str) -> str:
    """The envelope's ``subject`` of every event about a room."""
    return f"teleconsultation/{room_id}"


def ids_of(room: Document) -> dict[str, str]:
    """The identifiers every teleconsultation event carries, from its room."""
    return {"appointment_id": room["_id"], "patient_id": room["patient_id"],
            "doctor_user_id": room["doctor_user_id"]}
