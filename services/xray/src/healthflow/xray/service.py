"""Use cases of the xray service: orders, the work list, who views a patient's images,
and the read models fed by events. Images (upload, viewing) are in :mod:`.studies`.

Each use case runs in one ``runtime.transact`` with the events it causes.
"""

from __future__ import annotations

import uuid

from healthflow.common import careteam
from healthflow.common.auth import Principal
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.records import EncounterFinished, EncounterStarted
from healthflow.xray import events, store
from healthflow.xray.domain import (
    OrderClosed,
    OrderNotFound,
    OrderRequest,
    OrderStatus,
    ReportNotFound,
    StudyNotFound,
    Viewer,
    check_cancellable,
    check_may_order,
    new_order,
    report_visible,
    viewer_of,
)

STAFF = "staff"
"""``accessor_role`` of the work list's roles (radiographers, paramedics)."""

# ----------------------------------------------------------------------------- access


async def viewer(uow: UnitOfWork, principal: Principal, patient_id: str, scope: str,
                 study_id: str | None = None) -> Viewer:
    """How ``principal`` views ``patient_id``'s images (:func:`domain.viewer_of`);
    a treating doctor's view publishes ``xray.accessed`` in the same transaction
    (:func:`record_access`).

    Raises:
        StudyNotFound (404), NotTreating (403).
    """
    reads_treated = principal.has(Permission.IMAGING_READ_TREATED)
    treats = reads_treated and await careteam.treats(uow, principal.subject, patient_id,
                                                     utcnow())
    role = viewer_of(principal.subject, patient_id,
                     reads_own=principal.has(Permission.IMAGING_READ_OWN),
                     reads_treated=reads_treated, treats=treats)
    if role is Viewer.TREATING_DOCTOR:
        record_access(uow, principal, patient_id, role.value, scope, study_id)
    return role


async def results_viewer(uow: UnitOfWork, principal: Principal, patient_id: str,
                         scope: str, study_id: str) -> Viewer:
    """:func:`viewer` for the automated results of a study (results, overlay, TID 1500
    SR): doctors as for the images; the patient, like the report
    (:func:`domain.report_visible`), only once the study's report is signed, so that a
    machine's suggestion never reaches them before their doctor's reading.

    Raises:
        StudyNotFound / ReportNotFound (404: the patient, before the report is final),
        NotTreating (403).
    """
    role = await viewer(uow, principal, patient_id, scope, study_id)
    if role is Viewer.PATIENT:
        try:
            report_visible(await store.report_of_study(uow, study_id), role)
        except ReportNotFound as exc:
            raise ReportNotFound("the automated results are shown to the patient once "
                                 "the study's report is signed") from exc
    return role


def record_access(uow: UnitOfWork, principal: Principal, patient_id: str, role: str,
                  scope: str, study_id: str | None = None) -> None:
    """Publish ``xray.accessed`` (as records publishes ``record.accessed``): every view of
    a patient's orders, images or reports by someone other than the patient, committed
    with the read, so no access goes unrecorded. ``role`` is ``treating_doctor`` or
    ``staff`` (the work list's radiographers and paramedics)."""
    uow.publish(events.XrayAccessed(
        patient_id=patient_id, accessor_id=principal.subject, accessor_role=role,
        accessor_roles=sorted(principal.roles), scope=scope, study_id=study_id),
        subject=f"patient/{patient_id}", patientid=patient_id)


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
        if principal.has(Permission.IMAGING_WORKLIST):
            record_access(uow, principal, doc["patient_id"], STAFF, "order")
            return doc
        try:
            await viewer(uow, principal, doc["patient_id"], "order")
        except StudyNotFound as exc:  # another patient's: existence is hidden
            raise OrderNotFound(f"no X-ray order {order_id}") from exc
        return doc

    return await runtime.transact(read, actor=principal.actor)


async def cancel_order(runtime: ServiceRuntime, principal: Principal, order_id: str
                       ) -> Document:
    """The ordering doctor revokes an active order (FHIR request-status ``revoked``): it
    leaves the work list and takes no images; ``xray.revoked``.

    Raises:
        OrderNotFound (404; also another doctor's patient's), NotTheRequester (403),
        OrderClosed (409): completed or revoked already.
    """

    async def write(uow: UnitOfWork) -> Document:
        doc = await store.get_order(uow, order_id)
        if doc is None:
            raise OrderNotFound(f"no X-ray order {order_id}")
        check_cancellable(doc, principal.subject)
        now = utcnow()
        if not await store.move_order(uow, order_id, OrderStatus.ACTIVE.value,
                                      OrderStatus.REVOKED.value, now):
            raise OrderClosed("the order changed concurrently; reload it")
        uow.publish(events.XrayRevoked(
            order_id=order_id, encounter_id=doc["encounter_id"], patient_id=doc["patient_id"],
            revoked_by=principal.subject, revoked_at=now),
            subject=f"xray-order/{order_id}", patientid=doc["patient_id"])
        return {**doc, "status": OrderStatus.REVOKED.value, "updated_at": now}

    return await runtime.transact(write, actor=principal.actor)


async def worklist(runtime: ServiceRuntime, principal: Principal, status: OrderStatus, *,
                   cursor: str | None, limit: int) -> tuple[list[Document], str | None]:
    """One page of the orders in ``status`` for radiographers and paramedics, stat first,
    oldest first (:func:`store.worklist`), and the next cursor; ``xray.accessed``
    (scope ``worklist``) for each patient listed.

    Raises:
        BadRequest (400): a cursor this API did not issue.
    """

    async def read(uow: UnitOfWork) -> tuple[list[Document], str | None]:
        docs, next_cursor = await store.worklist(uow, status.value, cursor=cursor,
                                                 limit=limit)
        for patient_id in dict.fromkeys(d["patient_id"] for d in docs):
            record_access(uow, principal, patient_id, STAFF, "worklist")
        return docs, next_cursor

    return await runtime.transact(read, actor=principal.actor)


# ----------------------------------------------------------------------------- from events


async def encounter_started(uow: UnitOfWork, data: EncounterStarted) -> None:
    """Remember the encounter (in progress) and the care relationship it rests on."""
    await store.encounter_started(uow, data.encounter_id, {
        "patient_id": data.patient_id, "practitioner_id": data.practitioner_id,
        "started_at": data.started_at})
    await careteam.encounter_started(uow, data.practitioner_id, data.patient_id,
                                     data.encounter_id, data.started_at, data.appointment_id)


async def encounter_finished(uow: UnitOfWork, data: EncounterFinished) -> None:
    """The encounter is finished: no more orders in it; its care relationship lasts
    ``care_after_encounter_days`` more (made now if the start has not arrived)."""
    await store.encounter_finished(uow, data.encounter_id, {
        "patient_id": data.patient_id, "practitioner_id": data.practitioner_id,
        "started_at": data.started_at, "finished_at": data.finished_at})
    await careteam.encounter_started(uow, data.practitioner_id, data.patient_id,
                                     data.encounter_id, data.started_at, data.appointment_id)
    await careteam.encounter_finished(uow, data.encounter_id, data.finished_at)
