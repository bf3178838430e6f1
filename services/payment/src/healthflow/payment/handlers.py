"""Events the payment service consumes.

* ``appointment.booked`` (appointment,
  :class:`~healthflow.contracts.appointment.AppointmentBooked`):
  a ``pending_payment`` booking with a fee enqueues its checkout (a Stripe
  PaymentIntent, opened by a job) and its hold's end;
  see :func:`~healthflow.payment.service.request_checkout`.
* ``appointment.cancelled`` (appointment,
  :class:`~healthflow.contracts.appointment.AppointmentCancelled`): recorded, and a
  job refunds the payment by the refund policy, or cancels its unpaid intent
  (:func:`~healthflow.payment.refunds.record_cancellation`).

No handler calls Stripe: a consumer gives up after a few retries (then dead-letters),
a job retries with backoff for hours (``Settings.stripe_job_*``).

Read models for billing (:mod:`~healthflow.payment.invoices`), each kept by its own
id and version so redelivery and any order give the same state:

* ``encounter.started`` (records): patient, doctor and hospital of an encounter, for
  the charge items added to it;
* ``staff.assigned`` (hospital): who works where as what (the accountants of a
  hospital are its finance staff);
* ``doctor.schedule_changed`` (doctor): the doctor's affiliated hospitals, in the
  doctor's order (an online consultation is invoiced by the first);
* ``hospital.registered|verified|rejected`` (hospital): the issuer's name printed on
  the invoice, and its time zone (the months of its P&L, :mod:`~healthflow.payment.pnl`).
"""

from __future__ import annotations

from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.appointment import AppointmentBooked, AppointmentCancelled
from healthflow.contracts.doctor import DoctorScheduleChanged
from healthflow.contracts.hospital import HospitalSnapshot, StaffAssigned
from healthflow.contracts.records import EncounterStarted
from healthflow.payment import refunds, service, store
from healthflow.payment.settings import Settings


def make_handlers(settings: Settings) -> Handlers:
    """``{event type: handler}``."""

    async def on_appointment_booked(event: Received[AppointmentBooked],
                                    uow: UnitOfWork) -> None:
        await service.request_checkout(uow, event.data, service.hold_of(settings))

    async def on_appointment_cancelled(event: Received[AppointmentCancelled],
                                       uow: UnitOfWork) -> None:
        await refunds.record_cancellation(uow, event.data, event.time)

    return {"appointment.booked": on_appointment_booked,
            "appointment.cancelled": on_appointment_cancelled,
            "encounter.started": on_encounter_started,
            "staff.assigned": on_staff_assigned,
            "doctor.schedule_changed": on_schedule_changed,
            "hospital.registered": on_hospital,
            "hospital.verified": on_hospital,
            "hospital.rejected": on_hospital}


async def on_encounter_started(event: Received[EncounterStarted], uow: UnitOfWork) -> None:
    data = event.data
    await uow.db[store.ENCOUNTERS].update_one(
        {"_id": data.encounter_id},
        {"$set": {"patient_id": data.patient_id, "practitioner_id": data.practitioner_id,
                  "hospital_id": data.hospital_id}}, upsert=True, session=uow.session)


async def on_staff_assigned(event: Received[StaffAssigned], uow: UnitOfWork) -> None:
    data = event.data
    await uow.db[store.STAFF].update_one(
        {"_id": data.membership_id},
        {"$set": {"hospital_id": data.hospital_id, "user_id": data.user_id,
                  "staff_role": data.staff_role}}, upsert=True, session=uow.session)


async def on_schedule_changed(event: Received[DoctorScheduleChanged],
                              uow: UnitOfWork) -> None:
    data = event.data
    hospitals = list(dict.fromkeys(loc.hospital_id for loc in data.locations
                                   if loc.hospital_id))
    await store.put_versioned(uow.db, store.DOCTORS, data.doctor_id, data.version,
                              {"hospital_ids": hospitals}, uow.session)


async def on_hospital(event: Received[HospitalSnapshot], uow: UnitOfWork) -> None:
    data = event.data
    await store.put_versioned(uow.db, store.HOSPITALS, data.hospital_id, data.version,
                              {"name": data.name, "city": data.city,
                               "country": data.country, "time_zone": data.time_zone},
                              uow.session)
