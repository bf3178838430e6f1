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

* ``encounter.started`` (records): patient, doctor, hospital and start of an encounter,
  for the charge items added to it (the start is their date of service);
* ``encounter.coded`` (records): an encounter's ICD-10 diagnoses and coded procedures,
  the newest ``revision`` kept, for the claims (:mod:`~healthflow.payment.coding`);
* ``staff.assigned`` / ``staff.removed`` (hospital): who works where as what (the
  accountants of a hospital are its finance staff; :mod:`healthflow.common.tenancy`, a
  removal ends it in any order);
* ``doctor.schedule_changed`` (doctor): the doctor's affiliated hospitals, in the
  doctor's order (an online consultation is invoiced by the first);
* ``hospital.registered|verified|rejected`` (hospital): the issuer's name printed on
  the invoice, and its time zone (the months of its P&L, :mod:`~healthflow.payment.pnl`).
"""

from __future__ import annotations

from healthflow.common import tenancy
from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.appointment import AppointmentBooked, AppointmentCancelled
from healthflow.contracts.doctor import DoctorScheduleChanged
from healthflow.contracts.hospital import HospitalSnapshot
from healthflow.contracts.records import EncounterCoded, EncounterStarted
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
            "encounter.coded": on_encounter_coded,
            **tenancy.handlers(collection=store.STAFF),
            "doctor.schedule_changed": on_schedule_changed,
            "hospital.registered": on_hospital,
            "hospital.verified": on_hospital,
            "hospital.rejected": on_hospital}


async def on_encounter_started(event: Received[EncounterStarted], uow: UnitOfWork) -> None:
    data = event.data
    await uow.db[store.ENCOUNTERS].update_one(
        {"_id": data.encounter_id},
        {"$set": {"patient_id": data.patient_id, "practitioner_id": data.practitioner_id,
                  "hospital_id": data.hospital_id, "started_at": data.started_at}},
        upsert=True, session=uow.session)


async def on_encounter_coded(event: Received[EncounterCoded], uow: UnitOfWork) -> None:
    data = event.data
    await store.put_versioned(uow.db, store.ENCOUNTER_CODES, data.encounter_id, data.revision,
                              {"patient_id": data.patient_id,
                               "appointment_id": data.appointment_id,
                               "hospital_id": data.hospital_id,
                               "diagnoses": [d.model_dump() for d in data.diagnoses],
                               "procedures": [p.model_dump() for p in data.procedures],
                               "coded_at": data.coded_at}, uow.session)


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
