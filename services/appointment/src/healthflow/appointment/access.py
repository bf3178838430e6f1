"""Who may act on an appointment, and in which capacity (patient, doctor, staff).

Staff permissions (``appointments:book_any``, ``read_any``, ``manage_any``) reach only the
hospitals where the caller holds a staff membership (issue 16; the read model of
:mod:`healthflow.common.tenancy`); admins and compliance officers reach every hospital.

An appointment belongs to the hospitals in its ``hospital_ids``: an in-person one to the
hospital of its location, an online one to every hospital the doctor was affiliated with
when it was booked (or rescheduled). Staff of another hospital are answered as if the
appointment did not exist (404, the same detail), so its existence is not revealed.
"""

from __future__ import annotations

from typing import Any

from healthflow.appointment.availability import Availability, Mode
from healthflow.appointment.domain import Actor, AppointmentNotFound
from healthflow.common.auth import Principal
from healthflow.common.errors import Forbidden
from healthflow.common.mongo import Document
from healthflow.common.permissions import Permission
from healthflow.common.tenancy import Reach, reach_of

STAFF_PERMISSIONS = (Permission.APPOINTMENTS_BOOK_ANY, Permission.APPOINTMENTS_READ_ANY,
                     Permission.APPOINTMENTS_MANAGE_ANY)


def hospitals_of(availability: Availability, mode: Mode | str,
                 location_id: str | None) -> list[str]:
    """The hospitals an appointment belongs to: its location's (in person), else every
    hospital the doctor is affiliated with (online)."""
    if Mode(mode) is Mode.IN_PERSON and location_id:
        return [location_id]
    return list(availability.hospital_ids)


async def staff_reach(db: Any, principal: Principal) -> Reach | None:
    """The caller's reach when they hold a staff permission (``None`` otherwise: no query)."""
    if not any(principal.has(p) for p in STAFF_PERMISSIONS):
        return None
    return await reach_of(db, principal)


def not_found(appointment_id: str) -> AppointmentNotFound:
    """The one answer for an appointment that is missing or out of the caller's reach."""
    return AppointmentNotFound(f"appointment {appointment_id} does not exist")


def capacity(principal: Principal, appointment: Document, reach: Reach | None, *,
             write: bool) -> Actor:
    """In what capacity ``principal`` may read (or, ``write``, change) ``appointment``.

    Staff hold ``appointments:manage_any`` (reads: ``appointments:read_any``) at one of the
    appointment's hospitals (``reach``); the doctor is its ``doctor_user_id`` with
    ``appointments:manage_own`` (reads: ``read_own``); the patient is its ``patient_id``
    with ``appointments:book_own`` (reads: ``read_own``).

    Raises:
        AppointmentNotFound: (404) staff whose reach does not cover the appointment.
        Forbidden: (403) anybody else who is none of these.
    """
    subject = principal.subject
    staff = principal.has(Permission.APPOINTMENTS_MANAGE_ANY) or (
        not write and principal.has(Permission.APPOINTMENTS_READ_ANY))
    if staff and reach is not None and reach.covers_any(appointment.get("hospital_ids") or []):
        return Actor.STAFF
    doctor_perm = Permission.APPOINTMENTS_MANAGE_OWN if write else Permission.APPOINTMENTS_READ_OWN
    if appointment.get("doctor_user_id") == subject and principal.has(doctor_perm):
        return Actor.DOCTOR
    patient_perm = Permission.APPOINTMENTS_BOOK_OWN if write else Permission.APPOINTMENTS_READ_OWN
    if appointment.get("patient_id") == subject and principal.has(patient_perm):
        return Actor.PATIENT
    if reach is not None:
        raise not_found(appointment["_id"])
    raise Forbidden("you may only act on your own appointments")


def ensure_books_within(reach: Reach | None, hospital_ids: list[str]) -> None:
    """Staff book (or move an appointment) only at hospitals where they work.

    Doctors' schedules are public to every signed-in user (``GET /api/v1/slots``), so the
    refusal reveals nothing and says why.

    Raises:
        Forbidden: (403) none of ``hospital_ids`` is in ``reach``.
    """
    if reach is None or not reach.covers_any(hospital_ids):
        raise Forbidden("staff book only at the hospitals where they hold a staff membership; "
                        "this slot belongs to none of them")


def listing_scope(principal: Principal, reach: Reach | None) -> dict[str, Any]:
    """The filter that limits a listing to what the caller may read: everything (platform),
    their hospitals' appointments and their own (staff), else their own."""
    own: list[dict[str, Any]] = [{"patient_id": principal.subject},
                                 {"doctor_user_id": principal.subject}]
    if reach is not None and principal.has(Permission.APPOINTMENTS_READ_ANY):
        if reach.platform:
            return {}
        own.append({"hospital_ids": {"$in": sorted(reach.member_of)}})
    return {"$or": own}
