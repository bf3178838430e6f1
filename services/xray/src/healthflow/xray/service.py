"""Use cases of the xray service: orders, the work list, who views a patient's images,
and the read models fed by events. Images (upload, viewing) are in :mod:`.studies`.

Each use case runs in one ``runtime.transact`` with the events it causes.
"""

from __future__ import annotations

import uuid

from healthflow.common.auth import Principal
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.appointment import AppointmentEvent
from healthflow.contracts.records import EncounterFinished, EncounterStarted
from healthflow.xray import events, store
from healthflow.xray.domain import (
    OrderNotFound,
    OrderRequest,
    OrderStatus,
    StudyNotFound,
    Viewer,
    check_may_order,
    new_order,
    viewer_of,
)

# ----------------------------------------------------------------------------- access


async def viewer(uow: UnitOfWork, principal: Principal, patient_id: str, scope: str,
                 study_id: str | None = None) -> Viewer:
    """How ``principal`` views ``patient_id``'s images (:func:`domain.viewer_of`);
    a treating doctor's view publishes ``xray.accessed`` in the same transaction.

    Raises:
        StudyNotFound (404), NotTreating (403).
    """
    reads_treated = principal.has(Permission.IMAGING_READ_TREATED)
    treats = reads_treated and await store.treats(uow, principal.subject, patient_id)
    role = viewer_of(principal.subject, patient_id,
                     reads_own=principal.has(Permission.IMAGING_READ_OWN),
                     reads_treated=reads_treated, treats=treats)
    if role is Viewer.TREATING_DOCTOR:
        uow.publish(events.XrayAccessed(patient_id=patient_id, accessor_id=principal.subject,
                                        accessor_role=role.value, scope=scope,
                                        study_id=study_id),
                    subject=f"patient/{patient_id}", patientid=patient_id)
    return role


# ----------------------------------------------------------------------------- orders


async def order_xray(runtime: ServiceRuntime, principal: Principal, request: OrderRequest
                     ) -> Document:
    """A doctor orders an X-ray in an in-progress encounter they conduct; ``xray.requested``.

    Raises:
        UnknownEncounter (422), NotYourEncounter (403), EncounterStateConflict (409).
    """

    async def write(uow: UnitOfWork) -> Document:
        encounter = await store.get_encounter(uow, request.encounter_id)
        check_may_order(encounter, principal.subject)
        assert encounter is not None
        now = utcnow()
        doc = new_order(str(uuid.uuid4()), request, encounter, principal.subject, now)
        await store.insert_order(uow, doc)
        uow.publish(events.XrayRequested(
            order_id=doc["_id"], encounter_id=doc["encounter_id"], patient_id=doc["patient_id"],
            requester_id=doc["requester_id"], body_part=doc["body_part"],
            body_site_snomed=doc["body_site"]["code"], view=doc["view"],
            priority=doc["priority"], accession_number=doc["accession_number"],
            requested_at=now), subject=f"xray-order/{doc['_id']}", patientid=doc["patient_id"])
        return doc

    return await runtime.transact(write, actor=principal.actor)


async def read_order(runtime: ServiceRuntime, principal: Principal, order_id: str) -> Document:
    """One order: for the work list's roles, its patient, or a treating doctor.

    Raises:
        OrderNotFound (404; also for another patient's), NotTreating (403).
    """

    async def read(uow: UnitOfWork) -> Document:
        doc = await store.get_order(uow, order_id)
        if doc is None:
            raise OrderNotFound(f"no X-ray order {order_id}")
        if not principal.has(Permission.IMAGING_WORKLIST):
            try:
                await viewer(uow, principal, doc["patient_id"], "order")
            except StudyNotFound as exc:  # another patient's: existence is hidden
                raise OrderNotFound(f"no X-ray order {order_id}") from exc
        return doc

    return await runtime.transact(read, actor=principal.actor)


async def worklist(runtime: ServiceRuntime, status: OrderStatus) -> list[Document]:
    """Orders in ``status`` for radiographers and paramedics, stat first, oldest first."""
    return await store.worklist(runtime.db, [status.value])


# ----------------------------------------------------------------------------- from events


async def encounter_started(uow: UnitOfWork, data: EncounterStarted) -> None:
    """Remember the encounter (in progress) and the care relationship it makes."""
    await store.encounter_started(uow, data.encounter_id, {
        "patient_id": data.patient_id, "practitioner_id": data.practitioner_id,
        "started_at": data.started_at})
    await store.add_care(uow, data.practitioner_id, data.patient_id, "encounters",
                         data.encounter_id)


async def encounter_finished(uow: UnitOfWork, data: EncounterFinished) -> None:
    """The encounter is finished: no more orders in it (its care relationship stays)."""
    await store.encounter_finished(uow, data.encounter_id, {
        "patient_id": data.patient_id, "practitioner_id": data.practitioner_id,
        "started_at": data.started_at, "finished_at": data.finished_at})
    await store.add_care(uow, data.practitioner_id, data.patient_id, "encounters",
                         data.encounter_id)


async def appointment_changed(uow: UnitOfWork, appointment: AppointmentEvent, *,
                              cancelled: bool) -> None:
    """A booked (or cancelled) appointment makes (or no longer makes) a care
    relationship; a cancellation that overtakes its booking still wins."""
    if appointment.doctor_user_id:
        await store.add_care(uow, appointment.doctor_user_id, appointment.patient_id,
                             "cancelled" if cancelled else "appointments",
                             appointment.appointment_id)
