"""Contracts of the events the teleconference service publishes (identifiers only, never
personal data: no names, no media, no chat). Routing key = type; ``patientid`` set; the
envelope's ``subject`` is ``teleconsultation/<appointment id>``. Times are aware UTC."""

from __future__ import annotations

from datetime import datetime

from healthflow.contracts.base import EventPayload, event_type

PUBLISHER = "teleconference"


class TeleconsultEvent(EventPayload):
    """Fields every teleconsultation event shares: the online appointment it is for,
    its patient (user id) and its doctor (user id)."""

    appointment_id: str
    patient_id: str
    doctor_user_id: str


@event_type("teleconsult.started", version=1, publisher=PUBLISHER)
class TeleconsultStarted(TeleconsultEvent):
    """The doctor admitted the patient: the consultation (and its encounter) began at
    ``started_at``."""

    started_at: datetime


@event_type("teleconsult.participant_joined", version=1, publisher=PUBLISHER)
class TeleconsultParticipantJoined(TeleconsultEvent):
    """``user_id`` (``role`` patient | doctor) entered the room at ``joined_at`` in
    ``state`` waiting | admitted, or was admitted (``state`` admitted, ``admitted_by``
    the doctor's user id)."""

    participant_id: str
    user_id: str
    role: str
    state: str
    joined_at: datetime
    admitted_by: str | None = None


@event_type("teleconsult.participant_left", version=1, publisher=PUBLISHER)
class TeleconsultParticipantLeft(TeleconsultEvent):
    """``user_id`` left the room at ``left_at``; ``reason`` left | removed (by the doctor,
    ``removed_by``) | ended (the consultation ended around them)."""

    participant_id: str
    user_id: str
    role: str
    reason: str
    left_at: datetime
    removed_by: str | None = None


@event_type("teleconsult.ended", version=1, publisher=PUBLISHER)
class TeleconsultEnded(TeleconsultEvent):
    """The consultation ended at ``ended_at``: by the doctor (``ended_by`` their user id)
    or, ``ended_by`` ``"system"``, because the room's window closed. ``started`` says
    whether it had begun (an encounter to finish)."""

    ended_at: datetime
    ended_by: str
    started: bool


@event_type("teleconsult.recording_consent", version=1, publisher=PUBLISHER)
class TeleconsultRecordingConsent(TeleconsultEvent):
    """``user_id`` (``role``) gave (``given``) or withdrew their consent to the recording
    of this consultation at ``at``: the evidence a recording rests on."""

    participant_id: str
    user_id: str
    role: str
    given: bool
    at: datetime


@event_type("teleconsult.recording_started", version=1, publisher=PUBLISHER)
class TeleconsultRecordingStarted(TeleconsultEvent):
    """The doctor (``started_by``) started recording ``recording_id`` at ``started_at``,
    every admitted participant having consented."""

    recording_id: str
    started_by: str
    started_at: datetime


@event_type("teleconsult.recording_stopped", version=1, publisher=PUBLISHER)
class TeleconsultRecordingStopped(TeleconsultEvent):
    """Recording ``recording_id`` stopped at ``stopped_at``; ``reason`` stopped (by the
    doctor) | consent_withdrawn | unconsented_participant | ended."""

    recording_id: str
    stopped_by: str
    reason: str
    stopped_at: datetime


@event_type("recording.available", version=1, publisher=PUBLISHER)
class RecordingAvailable(TeleconsultEvent):
    """Recording ``recording_id`` is stored: ``files`` media files (one WebM of each
    participant's audio and video), to be deleted after ``delete_after``."""

    recording_id: str
    files: int
    delete_after: datetime


@event_type("recording.deleted", version=1, publisher=PUBLISHER)
class RecordingDeleted(TeleconsultEvent):
    """Recording ``recording_id``'s files were deleted at ``deleted_at`` because its
    retention period ended (``reason`` retention)."""

    recording_id: str
    reason: str
    deleted_at: datetime


@event_type("recording.accessed", version=1, publisher=PUBLISHER)
class RecordingAccessed(TeleconsultEvent):
    """``accessor_id`` (``accessor_role`` patient | doctor) fetched file ``file_index``
    of recording ``recording_id`` at ``at``."""

    recording_id: str
    file_index: int
    accessor_id: str
    accessor_role: str
    at: datetime


@event_type("teleconsult.guest_invited", version=1, publisher=PUBLISHER)
class TeleconsultGuestInvited(TeleconsultEvent):
    """The doctor (``invited_by``) invited a guest of ``kind`` interpreter | family |
    clinician by the single-use link ``invitation_id``, valid until ``expires_at``. The
    guest joins as participant ``guest:<invitation_id>``."""

    invitation_id: str
    kind: str
    invited_by: str
    expires_at: datetime
