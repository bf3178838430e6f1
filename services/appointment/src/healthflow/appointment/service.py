"""Use cases of the appointment service: the one path each behaviour takes.

Routes and event handlers call these; every write runs in
``runtime.transact`` so the appointment, its slot locks and its outbox event
commit together. The caller's capacity (patient, doctor, staff) is decided in
one place, :func:`healthflow.appointment.access.capacity`; staff act only at the
hospitals where they work (:mod:`healthflow.appointment.access`).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from healthflow.appointment import events, store
from healthflow.appointment.access import (
    capacity,
    ensure_books_within,
    hospitals_of,
    not_found,
    staff_reach,
)
from healthflow.appointment.availability import Availability, Mode
from healthflow.appointment.domain import (
    Actor,
    ChangePolicy,
    DoctorNotBookable,
    PatientAlreadyBooked,
    PaymentState,
    SlotAlreadyBooked,
    Status,
    TooManyFutureAppointments,
    UnknownDoctor,
    ensure_reschedulable,
    ensure_transition,
    initial_status,
    resolve_slot,
)
from healthflow.appointment.schemas import BookingRequest, CancelRequest, RescheduleRequest
from healthflow.appointment.settings import Settings
from healthflow.appointment.slots import BookableSlot, free_slots
from healthflow.common.auth import Principal
from healthflow.common.errors import Conflict, Forbidden, UnprocessableContent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime

WRITE_CONFLICT = 112
DUPLICATE_KEY = 11000

TRANSITION_EVENTS: dict[Status, type[events.AppointmentEvent]] = {
    Status.CONFIRMED: events.AppointmentConfirmed,
    Status.CHECKED_IN: events.AppointmentCheckedIn,
    Status.COMPLETED: events.AppointmentCompleted,
    Status.NO_SHOW: events.AppointmentNoShow,
}

# Who may move an appointment to each status (beyond holding a permission).
ALLOWED_ACTORS: dict[str, frozenset[Actor]] = {
    "cancel": frozenset({Actor.PATIENT, Actor.DOCTOR, Actor.STAFF}),
    "reschedule": frozenset({Actor.PATIENT, Actor.DOCTOR, Actor.STAFF}),
    Status.CONFIRMED: frozenset({Actor.DOCTOR, Actor.STAFF}),
    Status.CHECKED_IN: frozenset({Actor.DOCTOR, Actor.STAFF}),
    Status.COMPLETED: frozenset({Actor.DOCTOR, Actor.STAFF}),
    Status.NO_SHOW: frozenset({Actor.DOCTOR, Actor.STAFF}),
}


def settings_of(runtime: ServiceRuntime) -> Settings:
    """The runtime's settings as this service's :class:`Settings` (``create_app`` builds them)."""
    settings = runtime.settings
    assert isinstance(settings, Settings)
    return settings


def policy(runtime: ServiceRuntime) -> ChangePolicy:
    """The cancellation and reschedule windows configured for this service."""
    settings = settings_of(runtime)
    return ChangePolicy(
        cancel_window=timedelta(minutes=settings.cancel_window_minutes),
        reschedule_window=timedelta(minutes=settings.reschedule_window_minutes),
    )


def _ensure_actor(action: str, actor: Actor) -> None:
    if actor not in ALLOWED_ACTORS[action]:
        label = (f"mark appointments as {action.value}" if isinstance(action, Status)
                 else f"{action} appointments")
        raise Forbidden(f"a {actor.value} cannot {label}")


def event_fields(doc: Document) -> dict[str, Any]:
    """The fields every appointment event carries, from an appointment document."""
    return {
        "appointment_id": doc["_id"], "patient_id": doc["patient_id"],
        "doctor_id": doc["doctor_id"], "doctor_user_id": doc.get("doctor_user_id"),
        "location_id": doc.get("location_id"), "start": doc["start"], "end": doc["end"],
        "timezone": doc["timezone"], "mode": doc["mode"], "status": doc["status"],
        "hospital_ids": list(doc.get("hospital_ids") or []),
    }


def _booking_conflict(key: Document) -> Conflict:
    """The 409 for a refused lock whose key was ``key`` (``{party, party_id, unit_start}``)."""
    if key.get("party") == "patient":
        return PatientAlreadyBooked(
            "the patient already holds an appointment overlapping this time"
        )
    return SlotAlreadyBooked("slot already booked: another appointment holds this time")


def _duplicate_key(exc: OperationFailure) -> Document | None:
    """The refused key of a duplicate-key error (single or bulk), else ``None``."""
    if isinstance(exc, BulkWriteError):
        for error in exc.details.get("writeErrors", []):
            if error.get("code") == DUPLICATE_KEY:
                return dict(error.get("keyValue") or {})
        return None
    if isinstance(exc, DuplicateKeyError) or exc.code == DUPLICATE_KEY:
        return dict((exc.details or {}).get("keyValue") or {})
    return None


async def _locked(runtime: ServiceRuntime, fn: Any, actor: str) -> Any:
    """``runtime.transact(fn)``, with lock collisions turned into 409 problems.

    A duplicate key on ``slot_locks`` means the slot (or the patient's time) is
    held; a write conflict that outlived the driver's retries means a
    concurrent transaction took it.
    """
    try:
        return await runtime.transact(fn, actor=actor)
    except OperationFailure as exc:
        key = _duplicate_key(exc)
        if key is not None:
            raise _booking_conflict(key) from None
        if exc.code == WRITE_CONFLICT or exc.has_error_label("TransientTransactionError"):
            raise SlotAlreadyBooked(
                "slot already booked: a concurrent booking took this time"
            ) from None
        raise


async def schedule_of(runtime: ServiceRuntime, doctor_id: str) -> Availability:
    """The stored availability of ``doctor_id``.

    Raises:
        UnknownDoctor: (404) no ``doctor.schedule_changed`` for it has arrived.
    """
    availability = await store.get_schedule(runtime.db, doctor_id)
    if availability is None:
        raise UnknownDoctor(f"doctor {doctor_id} is unknown to scheduling")
    return availability


async def list_free_slots(runtime: ServiceRuntime, doctor_id: str, start: datetime,
                          end: datetime) -> tuple[Availability, list[BookableSlot]]:
    """Free slots of a verified doctor in ``[start, end)`` (aware).

    Raises:
        UnknownDoctor: (404); DoctorNotBookable: (409) not verified.
    """
    availability = await schedule_of(runtime, doctor_id)
    if not availability.verified:
        raise DoctorNotBookable(f"doctor {doctor_id} is not verified and cannot be booked")
    taken = await store.taken_intervals(runtime.db, doctor_id, start, end)
    return availability, free_slots(availability, start, end, taken=taken, now=utcnow())


def _booking_for(principal: Principal, request: BookingRequest) -> tuple[str, Actor]:
    """Whose appointment ``request`` books, and in which capacity: another patient's as
    staff (``appointments:book_any``), else the caller's own as a patient.

    Raises:
        Forbidden: (403) booking for another patient without ``appointments:book_any``.
        UnprocessableContent: (422) staff booking without a ``patient_id``.
    """
    if request.patient_id is not None and request.patient_id != principal.subject:
        if not principal.has(Permission.APPOINTMENTS_BOOK_ANY):
            raise Forbidden("booking for another patient requires appointments:book_any")
        return request.patient_id, Actor.STAFF
    if principal.has(Permission.APPOINTMENTS_BOOK_OWN):
        return principal.subject, Actor.PATIENT
    raise UnprocessableContent("patient_id is required when staff book for a patient")


def _new_appointment(availability: Availability, slot: BookableSlot, request: BookingRequest,
                     *, patient_id: str, hospital_ids: list[str], by: str, role: Actor,
                     now: datetime) -> Document:
    """The document of a new appointment in ``slot`` (its initial status from the fee and
    the mode: :func:`~healthflow.appointment.domain.initial_status`)."""
    fee = availability.fee_for(slot.mode)
    status = initial_status(fee_amount=fee.amount if fee else None,
                            online=slot.mode.value == "online",
                            requires_prepayment=bool(fee and fee.requires_prepayment))
    payment = None
    if fee is not None and status is Status.PENDING_PAYMENT:
        payment = {"payment_id": None, "status": PaymentState.PENDING.value,
                   "amount": fee.amount, "currency": fee.currency, "refunded_amount": 0,
                   "at": now}
    return {
        "_id": str(uuid.uuid4()),
        "doctor_id": availability.doctor_id,
        "doctor_user_id": availability.doctor_user_id,
        "patient_id": patient_id,
        "location_id": slot.location_id,
        "hospital_ids": hospital_ids,
        "timezone": slot.timezone,
        "start": slot.start,
        "end": slot.end,
        "mode": slot.mode.value,
        "status": status.value,
        "reason": request.reason,
        "preferences": request.preferences.model_dump(mode="json"),
        "fee_amount": fee.amount if fee else None,
        "fee_currency": fee.currency if fee else None,
        "payment": payment,
        "booked_by": by,
        "booked_by_role": role.value,
        "created_at": now,
        "updated_at": now,
        "status_history": [{"status": status.value, "at": now, "by": by}],
        "reschedules": [],
        "cancellation": None,
        "version": 1,
    }


async def book(runtime: ServiceRuntime, principal: Principal, request: BookingRequest
               ) -> Document:
    """Book a slot for the caller (patient) or for ``request.patient_id`` (staff).

    Raises:
        Forbidden: (403) booking for another patient without ``appointments:book_any``, or
            at a hospital where the caller holds no staff membership.
        UnprocessableContent: (422) staff booking without a ``patient_id``.
        UnknownDoctor, DoctorNotBookable, SlotInPast, OutsideAvailability, OffSlotGrid:
            see :func:`~healthflow.appointment.domain.resolve_slot`.
        SlotAlreadyBooked / PatientAlreadyBooked: (409) the database refused the locks.
        TooManyFutureAppointments: (409) a patient booking for themselves is at the cap
            (:func:`_within_cap`).
    """
    patient_id, role = _booking_for(principal, request)
    availability = await schedule_of(runtime, request.doctor_id)
    now = utcnow()
    slot = resolve_slot(availability, request.start, request.mode, request.location_id, now)
    hospital_ids = hospitals_of(availability, slot.mode, slot.location_id)
    if role is Actor.STAFF:
        ensure_books_within(await staff_reach(runtime.db, principal), hospital_ids)
    doc = _new_appointment(availability, slot, request, patient_id=patient_id,
                           hospital_ids=hospital_ids, by=principal.subject, role=role, now=now)

    async def write(uow: UnitOfWork) -> None:
        if role is Actor.PATIENT:
            await _within_cap(runtime, uow, patient_id, now)
        await store.take_locks(uow.db, uow.session, doc)
        await uow.db[store.APPOINTMENTS].insert_one(doc, session=uow.session)
        uow.publish(
            events.AppointmentBooked(
                **event_fields(doc), booked_by=principal.subject, booked_by_role=role.value,
                fee_amount=doc["fee_amount"], fee_currency=doc["fee_currency"],
            ),
            subject=doc["_id"], patientid=patient_id,
        )

    await _locked(runtime, write, principal.actor)
    return doc


async def _within_cap(runtime: ServiceRuntime, uow: UnitOfWork, patient_id: str,
                      now: datetime) -> None:
    """Inside the booking's transaction: refuse a patient's booking past
    ``max_future_appointments_per_patient`` upcoming active appointments (409; race-safe:
    :func:`store.guard_patient_bookings`)."""
    cap = settings_of(runtime).max_future_appointments_per_patient
    await store.guard_patient_bookings(uow.db, uow.session, patient_id)
    if await store.count_upcoming(uow.db, uow.session, patient_id, now) >= cap:
        raise TooManyFutureAppointments(
            f"you already hold {cap} upcoming appointments, the most one patient may; "
            "cancel one you do not need, or ask the practice to book for you")


async def get(runtime: ServiceRuntime, principal: Principal, appointment_id: str) -> Document:
    """One appointment the caller may read.

    Raises:
        AppointmentNotFound: (404) missing, or (to staff) of a hospital where they do not work.
        Forbidden: (403) another patient's or doctor's appointment.
    """
    reach = await staff_reach(runtime.db, principal)
    doc = await store.get_appointment(runtime.db, appointment_id)
    if doc is None:
        raise not_found(appointment_id)
    capacity(principal, doc, reach, write=False)
    return doc


async def _load_for_change(uow: UnitOfWork, principal: Principal, appointment_id: str,
                           action: str) -> tuple[Document, Actor]:
    reach = await staff_reach(uow.db, principal)
    doc = await store.get_appointment(uow.db, appointment_id, session=uow.session)
    if doc is None:
        raise not_found(appointment_id)
    actor = capacity(principal, doc, reach, write=True)
    _ensure_actor(action, actor)
    return doc, actor


async def _save(uow: UnitOfWork, before: Document, changes: Document,
                push: Document | None = None) -> Document:
    """Compare-and-set on ``version``: a concurrent change makes this a 409."""
    update: Document = {"$set": changes, "$inc": {"version": 1}}
    if push:
        update["$push"] = push
    result = await uow.db[store.APPOINTMENTS].update_one(
        {"_id": before["_id"], "version": before["version"]}, update, session=uow.session
    )
    if result.matched_count != 1:
        raise Conflict("the appointment changed concurrently; reload and retry")
    after = await store.get_appointment(uow.db, before["_id"], session=uow.session)
    assert after is not None
    return after


async def change_status(runtime: ServiceRuntime, principal: Principal, appointment_id: str,
                        target: Status) -> Document:
    """Confirm, check in, complete or mark no-show (doctor or staff).

    Raises:
        AppointmentNotFound (404), Forbidden (403), InvalidTransition (409).
    """
    now = utcnow()

    async def write(uow: UnitOfWork) -> Document:
        doc, _ = await _load_for_change(uow, principal, appointment_id, target)
        ensure_transition(Status(doc["status"]), target)
        after = await _save(
            uow, doc, {"status": target.value, "updated_at": now},
            {"status_history": {"status": target.value, "at": now, "by": principal.subject}},
        )
        uow.publish(TRANSITION_EVENTS[target](**event_fields(after)),
                    subject=appointment_id, patientid=after["patient_id"])
        return after

    result: Document = await runtime.transact(write, actor=principal.actor)
    return result


async def cancel(runtime: ServiceRuntime, principal: Principal, appointment_id: str,
                 request: CancelRequest) -> Document:
    """Cancel and release the slot locks in the same transaction.

    Raises:
        AppointmentNotFound (404), Forbidden (403), InvalidTransition (409),
        ChangeWindowClosed (409) for patients within the cancellation window.
    """
    now = utcnow()
    rules = policy(runtime)

    async def write(uow: UnitOfWork) -> Document:
        doc, actor = await _load_for_change(uow, principal, appointment_id, "cancel")
        ensure_transition(Status(doc["status"]), Status.CANCELLED)
        rules.check("cancel", actor, doc["start"], now)
        cancellation = {"by": principal.subject, "by_role": actor.value,
                        "reason_code": request.reason_code.value, "note": request.note,
                        "at": now}
        after = await _save(
            uow, doc,
            {"status": Status.CANCELLED.value, "updated_at": now, "cancellation": cancellation},
            {"status_history": {"status": Status.CANCELLED.value, "at": now,
                                "by": principal.subject}},
        )
        await store.release_locks(uow.db, uow.session, appointment_id)
        uow.publish(
            events.AppointmentCancelled(
                **event_fields(after), cancelled_by=principal.subject,
                cancelled_by_role=actor.value, reason_code=request.reason_code.value,
            ),
            subject=appointment_id, patientid=after["patient_id"],
        )
        return after

    result: Document = await runtime.transact(write, actor=principal.actor)
    return result


async def reschedule(runtime: ServiceRuntime, principal: Principal, appointment_id: str,
                     request: RescheduleRequest) -> Document:
    """Move to another free slot of the same doctor and mode, keeping the history.

    The old locks are deleted and the new ones inserted in one transaction; a
    confirmed appointment goes back to ``booked``.

    Raises:
        AppointmentNotFound (404), Forbidden (403), InvalidTransition (409),
        ChangeWindowClosed (409), the slot errors of :func:`book`, and
        UnprocessableContent (422) when the new start equals the current one.
    """
    now = utcnow()
    rules = policy(runtime)
    async def write(uow: UnitOfWork) -> Document:
        doc, actor = await _load_for_change(uow, principal, appointment_id, "reschedule")
        current = Status(doc["status"])
        ensure_reschedulable(current)
        rules.check("reschedule", actor, doc["start"], now)
        availability = await store.get_schedule(uow.db, doc["doctor_id"], session=uow.session)
        if availability is None:
            raise UnknownDoctor(f"doctor {doc['doctor_id']} is unknown to scheduling")
        slot = resolve_slot(availability, request.start, Mode(doc["mode"]),
                            request.location_id or doc.get("location_id"), now)
        if slot.start == doc["start"]:
            raise UnprocessableContent("the new start is the appointment's current start")
        hospital_ids = hospitals_of(availability, slot.mode, slot.location_id)
        if actor is Actor.STAFF:
            ensure_books_within(await staff_reach(uow.db, principal), hospital_ids)
        status = Status.BOOKED if current is Status.CONFIRMED else current
        entry = {"previous_start": doc["start"], "previous_end": doc["end"],
                 "start": slot.start, "end": slot.end, "by": principal.subject,
                 "by_role": actor.value, "at": now}
        await store.release_locks(uow.db, uow.session, appointment_id)
        after = await _save(
            uow, doc,
            {"start": slot.start, "end": slot.end, "location_id": slot.location_id,
             "hospital_ids": hospital_ids, "timezone": slot.timezone, "status": status.value,
             "updated_at": now},
            {"reschedules": entry},
        )
        await store.take_locks(uow.db, uow.session, after)
        uow.publish(
            events.AppointmentRescheduled(
                **event_fields(after), previous_start=doc["start"], previous_end=doc["end"],
                rescheduled_by_role=actor.value,
            ),
            subject=appointment_id, patientid=after["patient_id"],
        )
        return after

    result: Document = await _locked(runtime, write, principal.actor)
    return result


async def apply_schedule(uow: UnitOfWork, availability: Availability) -> bool:
    """Store a doctor's availability (the ``doctor.schedule_changed`` effect).

    Existing appointments are kept even if the new hours no longer cover them;
    staff reschedule or cancel those. Returns whether it replaced the stored one.
    """
    return await store.save_schedule(uow.db, uow.session, availability)
