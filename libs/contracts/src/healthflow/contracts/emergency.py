"""Contracts of the events the emergency service publishes.

Payloads carry ids, the triage priority (``P1`` … ``P4``), the incident's
position (WGS84 degrees) and times (aware UTC): never a name, a phone number,
an address or what the caller said, which stay in the emergency service. The
routing key is the type; the envelope's ``subject`` is ``emergency/<id>`` and
``patientid`` is set when a patient raised it from the app or a clinician named
the patient.

Where a named person was at a given time is personal data of the most sensitive kind
(it says where they fell ill). The audit log is permanent and append-only (no erasure),
and it keeps every envelope's ``patientid`` and actor; so the two events that carry
the incident's coordinates, ``emergency.raised`` and ``emergency.located``, are kept
there as a digest of their payload only (``audit_data = "digest"``): the log proves
what was published and when, for whom and by whom, and a holder of the event (the
emergency service's own record) can show it matches, while the coordinates (and the
triage priority) stay out of the log.
"""

from __future__ import annotations

from datetime import datetime

from healthflow.contracts.base import EventPayload, event_type

PUBLISHER = "emergency"


@event_type("emergency.raised", version=1, publisher=PUBLISHER)
class EmergencyRaised(EventPayload):
    """An emergency was raised at ``raised_at`` and triaged to ``priority``.

    ``latitude``/``longitude`` are WGS84 degrees and ``accuracy_m`` the radius of
    the reported position in metres; all three are ``None`` when a dispatcher took
    an address only (the paramedic service then escalates at once: there is no
    geocoder yet; a dispatcher sets the position later, ``emergency.located``).
    ``raised_by_role`` is the capacity it was raised in: ``patient``, ``dispatcher``,
    or a clinician's role (``doctor``, ``nurse``, ``patient_care``); ``patient_id``
    the raising patient's user id, or the patient a clinician named, else ``None``.
    """

    emergency_id: str
    priority: str
    latitude: float | None
    longitude: float | None
    accuracy_m: float | None
    raised_by_role: str
    patient_id: str | None
    raised_at: datetime

    audit_data = "digest"  # coordinates of a named person: see the module docstring


@event_type("emergency.assigned", version=1, publisher=PUBLISHER)
class EmergencyAssigned(EventPayload):
    """The unit ``unit_id`` (crewed by the paramedic ``paramedic_id``) was offered the
    emergency's task ``task_id`` at ``assigned_at``; a later event of the same type
    names the next unit when this one declines or does not answer in time."""

    emergency_id: str
    priority: str
    task_id: str
    unit_id: str
    paramedic_id: str
    assigned_at: datetime


@event_type("emergency.status_changed", version=1, publisher=PUBLISHER)
class EmergencyStatusChanged(EventPayload):
    """The emergency moved from ``previous_status`` to ``status`` at ``changed_at``.

    Statuses: ``raised``, ``assigned``, ``en_route``, ``on_scene``, ``transporting``,
    ``at_hospital``, ``closed``, ``cancelled``. ``changed_by_role`` is ``paramedic``,
    ``dispatcher`` or ``system`` (an unanswered offer sends it back to ``raised``).
    ``unit_id`` is the unit assigned at the time, if any.
    """

    emergency_id: str
    status: str
    previous_status: str
    unit_id: str | None
    changed_by_role: str
    changed_at: datetime


@event_type("emergency.destination_chosen", version=1, publisher=PUBLISHER)
class EmergencyDestinationChosen(EventPayload):
    """The crew is taking the patient to ``hospital_id`` (the nearest verified hospital
    with a department offering ``department``, a lower-case service code such as
    ``emergency`` or ``cardiology``) and left the scene at ``chosen_at``.

    ``department_id`` is that department; ``distance_m`` the straight-line (WGS84
    great-circle) distance from the incident in metres; ``unit_id`` the unit
    transporting. ``receiving_staff`` are the user ids of the hospital's staff who
    receive the patient, to be told in advance: the department's doctors and nurses,
    or the hospital's when the department has none on record (possibly empty).
    """

    emergency_id: str
    priority: str
    hospital_id: str
    department_id: str
    department: str
    distance_m: float
    unit_id: str | None
    receiving_staff: list[str]
    chosen_at: datetime


@event_type("emergency.reprioritised", version=1, publisher=PUBLISHER)
class EmergencyReprioritised(EventPayload):
    """A dispatcher (``reprioritised_by``, a user id) changed the emergency's priority
    from ``previous_priority`` to ``priority`` (``P1`` … ``P4``) at ``reprioritised_at``,
    for ``reason``: a code (``caller_update``, ``crew_assessment``,
    ``dispatcher_assessment``, ``triage_correction``), never free text."""

    emergency_id: str
    priority: str
    previous_priority: str
    reason: str
    reprioritised_by: str
    reprioritised_at: datetime


@event_type("emergency.located", version=1, publisher=PUBLISHER)
class EmergencyLocated(EventPayload):
    """A dispatcher (``located_by``, a user id) set the incident's position at
    ``located_at``: ``latitude``/``longitude`` WGS84 degrees, ``accuracy_m`` its radius
    in metres (an emergency raised from an address only, or a corrected position). The
    paramedic service assigns a unit to it as to a raised one."""

    emergency_id: str
    latitude: float
    longitude: float
    accuracy_m: float
    located_by: str
    located_at: datetime

    audit_data = "digest"  # coordinates of a (possibly named) person: module docstring
