"""Events the prescription service consumes; each calls a use case of :mod:`.service`.

* ``encounter.started`` / ``encounter.finished`` (records,
  :mod:`healthflow.contracts.records`): the encounters doctors prescribe in, their
  patient and practitioner; a doctor treats the patient of one until
  ``care_after_encounter_days`` after it finished (the records service's care rule).
* ``hospital.registered`` / ``.verified`` / ``.rejected`` (hospital,
  :class:`~healthflow.contracts.hospital.HospitalSnapshot`): the name, city and
  country printed on a prescription of an encounter at that hospital (newest
  ``version`` kept).
* ``user.registered`` (auth, :class:`~healthflow.contracts.auth.UserRegistered`): the
  full names printed on a prescription (nothing else of the account is kept), opened
  with the person key auth serves (:mod:`healthflow.common.personaldata`); none is kept
  when the key is gone. ``user.erased``: the name is deleted.
* ``patient.allergies_changed`` (patient,
  :class:`~healthflow.contracts.patient.PatientAllergiesChanged`): the allergy list
  the safety checks read, newest profile version kept.

Payloads arrive validated against their contracts; one that breaks its contract is
dead-lettered by the consumer, never skipped here.
"""

from __future__ import annotations

from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.personaldata import person_keys_for
from healthflow.common.settings import ServiceSettings
from healthflow.contracts.auth import UserErased, UserRegistered
from healthflow.contracts.hospital import HospitalSnapshot
from healthflow.contracts.patient import PatientAllergiesChanged
from healthflow.contracts.records import EncounterFinished, EncounterStarted
from healthflow.prescription import service


async def on_encounter_started(event: Received[EncounterStarted], uow: UnitOfWork) -> None:
    await service.encounter_started(uow, event.data)


async def on_encounter_finished(event: Received[EncounterFinished], uow: UnitOfWork) -> None:
    await service.encounter_finished(uow, event.data)


async def on_allergies_changed(event: Received[PatientAllergiesChanged],
                               uow: UnitOfWork) -> None:
    await service.allergies_changed(uow, event.data)


async def on_hospital(event: Received[HospitalSnapshot], uow: UnitOfWork) -> None:
    await service.hospital_changed(uow, event.data)


def make_handlers(settings: ServiceSettings) -> Handlers:
    """The handlers, opening sealed names with the person keys ``settings`` point at."""
    keys = person_keys_for(settings)

    async def on_user_registered(event: Received[UserRegistered], uow: UnitOfWork) -> None:
        data = event.data
        opened = await keys.open_fields(data.user_id, {"full_name": data.full_name})
        if opened is not None and opened["full_name"] is not None:
            await service.person_registered(uow, data.user_id, opened["full_name"])

    return {"user.registered": on_user_registered, "user.erased": on_user_erased, **HANDLERS}


async def on_user_erased(event: Received[UserErased], uow: UnitOfWork) -> None:
    await service.person_erased(uow, event.data.user_id)


HANDLERS: Handlers = {
    "encounter.started": on_encounter_started,
    "encounter.finished": on_encounter_finished,
    "patient.allergies_changed": on_allergies_changed,
    "hospital.registered": on_hospital,
    "hospital.verified": on_hospital,
    "hospital.rejected": on_hospital,
}
