"""Events the hospital service publishes (CloudEvents ``data`` payloads, version 1).

Payloads carry ids, the organisation's name, city, country and time zone —
facts about an organisation, never about a patient. ``subject`` of every
envelope is ``hospital/<hospital_id>``.

``version`` is the hospital record's revision (1 at registration, +1 per
change), so a consumer keeping a read model applies an event only when it is
newer than what it holds: delivery is at-least-once and not ordered.
"""

from __future__ import annotations

from datetime import datetime

from healthflow.contracts.base import EventPayload, event_type

PUBLISHER = "hospital"


class HospitalSnapshot(EventPayload):
    """What every ``hospital.*`` event says about the hospital (for consumers' read models).

    Fields: ``hospital_id``; ``version`` (revision, int ≥ 1); ``name``; ``city``;
    ``country`` (ISO 3166-1 alpha-2); ``time_zone`` (IANA key); ``status``
    (``pending`` | ``verified`` | ``rejected``); ``services`` (lower-case codes);
    ``latitude``/``longitude`` (WGS 84 degrees, the registered GeoJSON position; both
    ``None`` when the hospital gave none; added in a compatible change, so older
    events lack them).
    """

    hospital_id: str
    version: int
    name: str
    city: str
    country: str
    time_zone: str
    status: str
    services: list[str]
    latitude: float | None = None
    longitude: float | None = None


@event_type("hospital.registered", version=1, publisher=PUBLISHER)
class HospitalRegistered(HospitalSnapshot):
    """A hospital was registered and awaits verification (``status`` = ``pending``)."""

    registered_by: str


@event_type("hospital.verified", version=1, publisher=PUBLISHER)
class HospitalVerified(HospitalSnapshot):
    """An admin verified the hospital (``status`` = ``verified``); ``verified_at`` aware UTC."""

    verified_at: datetime


@event_type("hospital.rejected", version=1, publisher=PUBLISHER)
class HospitalRejected(HospitalSnapshot):
    """An admin rejected the registration (``status`` = ``rejected``) with a ``reason``."""

    reason: str
    rejected_at: datetime


@event_type("department.created", version=1, publisher=PUBLISHER)
class DepartmentCreated(EventPayload):
    """A department (FHIR sub-``Organization``) was added to ``hospital_id``."""

    hospital_id: str
    department_id: str
    name: str
    services: list[str]


@event_type("staff.assigned", version=1, publisher=PUBLISHER)
class StaffAssigned(EventPayload):
    """User ``user_id`` works at ``hospital_id`` as ``staff_role`` (in ``department_id`` if set).

    ``membership_id`` names this membership for good: it is never reused, so a consumer
    keeps memberships by it and a later ``staff.removed`` of the same id ends it, in
    whichever order the two arrive. Re-assigning a removed user makes a new membership.
    """

    hospital_id: str
    department_id: str | None
    user_id: str
    staff_role: str
    membership_id: str


@event_type("staff.removed", version=1, publisher=PUBLISHER)
class StaffRemoved(EventPayload):
    """Membership ``membership_id`` (user ``user_id`` at ``hospital_id``, in ``department_id``
    if set, as ``staff_role``) ended at ``removed_at`` (aware UTC); it never comes back.

    Carries the same fields as the ``staff.assigned`` it ends, so a consumer that sees the
    removal first can record the membership as ended and ignore the assignment later.
    """

    hospital_id: str
    department_id: str | None
    user_id: str
    staff_role: str
    membership_id: str
    removed_at: datetime
