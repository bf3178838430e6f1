"""Use cases of the radiology report of a study (FHIR R4 ``DiagnosticReport``): the ordering
or a treating doctor writes a draft (``preliminary``), rewrites it, and signs it (``final``,
``xray.reported``); viewers read it — the patient only once it is final.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pymongo.errors import DuplicateKeyError

from healthflow.common import careteam
from healthflow.common.auth import Principal
from healthflow.common.errors import Conflict
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.xray import documents, events, fhir, store
from healthflow.xray.domain import (
    OrderStatus,
    ReportNotFound,
    ReportStatus,
    StudyNotFound,
    check_may_report,
    check_signable,
    completes_order,
    report_visible,
    takes_over,
)
from healthflow.xray.service import viewer


async def _reported_study(uow: UnitOfWork, principal: Principal, study_id: str
                          ) -> tuple[Document, Document]:
    """(study, order), if the caller may report the study
    (:func:`domain.check_may_report`: its order's requester or a doctor treating the
    patient). Raises StudyNotFound (404), NotTreating (403)."""
    study = await store.get_study(uow, study_id)
    if study is None:
        raise StudyNotFound(f"no imaging study {study_id}")
    order = await store.get_order(uow, study["order_id"])
    if order is None:  # a study is made for an order, and orders are never deleted
        raise StudyNotFound(f"no imaging study {study_id}")
    treats = await careteam.treats(uow, principal.subject, study["patient_id"], utcnow())
    check_may_report(order, principal.subject, treats=treats)
    return study, order


async def write_report(runtime: ServiceRuntime, principal: Principal, study_id: str,
                       findings: str, impression: str) -> Document:
    """Create or rewrite the draft (``preliminary``) report of a study. The ordering
    doctor's write over another doctor's draft takes it over (:func:`domain.takes_over`:
    author now the requester, the other text discarded), ``xray.report_draft_replaced``.

    Raises:
        StudyNotFound (404), NotTreating / NotTheAuthor (403), ReportFinal (409),
        Conflict (409): changed concurrently.
    """

    async def write(uow: UnitOfWork) -> Document:
        study, order = await _reported_study(uow, principal, study_id)
        report = await store.report_of_study(uow, study_id)
        takeover = takes_over(report, principal.subject, order["requester_id"])
        now = utcnow()
        if report is None:
            doc: Document = {
                "_id": str(uuid.uuid4()), "study_id": study_id, "order_id": study["order_id"],
                "encounter_id": study["encounter_id"], "patient_id": study["patient_id"],
                "status": ReportStatus.PRELIMINARY.value, "findings": findings,
                "impression": impression, "author_id": principal.subject, "version": 1,
                "created_at": now, "updated_at": now, "issued_at": None}
            try:
                await store.insert_report(uow, doc)
            except DuplicateKeyError as exc:
                raise Conflict("a report of this study was just started; reload") from exc
            return doc
        fields = {"findings": findings, "impression": impression, "updated_at": now}
        if takeover:
            fields["author_id"] = principal.subject
            uow.publish(events.XrayReportDraftReplaced(
                report_id=report["_id"], study_id=study_id, order_id=report["order_id"],
                patient_id=report["patient_id"], replaced_author_id=report["author_id"],
                author_id=principal.subject, replaced_at=now),
                subject=f"imaging-study/{study_id}", patientid=report["patient_id"])
        if not await store.update_report(uow, report, fields):
            raise Conflict("the report changed concurrently; reload and retry")
        return await store.report_of_study(uow, study_id) or report

    return await runtime.transact(write, actor=principal.actor)


async def sign_report(runtime: ServiceRuntime, principal: Principal, study_id: str
                      ) -> Document:
    """preliminary → final by its author, issued now; the order becomes ``completed``
    (FHIR request-status: the service was performed and reported) unless another of its
    studies' reports completed it already (:func:`domain.completes_order`);
    ``xray.reported`` for each signed report.

    Raises:
        StudyNotFound / ReportNotFound (404), NotTreating / NotTheAuthor (403),
        ReportFinal / Conflict (409); OrderClosed (409) when the order was revoked (a
        cancelled order's report is never signed); nothing is changed then.
    """

    async def write(uow: UnitOfWork) -> Document:
        _, order = await _reported_study(uow, principal, study_id)
        report = check_signable(await store.report_of_study(uow, study_id), principal.subject)
        now = utcnow()
        if completes_order(order) and not await store.move_order(
                uow, report["order_id"], OrderStatus.ACTIVE.value,
                OrderStatus.COMPLETED.value, now):
            raise Conflict("the order changed concurrently; reload and retry")
        if not await store.update_report(uow, report, {
                "status": ReportStatus.FINAL.value, "issued_at": now, "updated_at": now}):
            raise Conflict("the report changed concurrently; reload and retry")
        uow.publish(events.XrayReported(
            report_id=report["_id"], study_id=study_id, order_id=report["order_id"],
            encounter_id=report["encounter_id"], patient_id=report["patient_id"],
            author_id=report["author_id"], status=ReportStatus.FINAL.value, issued_at=now),
            subject=f"imaging-study/{study_id}", patientid=report["patient_id"])
        return await store.report_of_study(uow, study_id) or report

    return await runtime.transact(write, actor=principal.actor)


async def read_report(runtime: ServiceRuntime, principal: Principal, study_id: str
                      ) -> Document:
    """The report: treating doctors see drafts, the patient only the final one.

    Raises:
        StudyNotFound / ReportNotFound (404), NotTreating (403).
    """

    async def read(uow: UnitOfWork) -> Document:
        study = await store.get_study(uow, study_id)
        if study is None:
            raise StudyNotFound(f"no imaging study {study_id}")
        role = await viewer(uow, principal, study["patient_id"], "report", study_id)
        return report_visible(await store.report_of_study(uow, study_id), role)

    return await runtime.transact(read, actor=principal.actor)


async def _final_report(uow: UnitOfWork, principal: Principal, study_id: str
                        ) -> tuple[Document, Document, Document]:
    """(report, study, order) of a signed report the caller may view (``xray.accessed``
    scope ``report`` for a doctor). Raises StudyNotFound / ReportNotFound (404: none,
    or not signed yet), NotTreating (403)."""
    study = await store.get_study(uow, study_id)
    if study is None:
        raise StudyNotFound(f"no imaging study {study_id}")
    await viewer(uow, principal, study["patient_id"], "report", study_id)
    report = await store.report_of_study(uow, study_id)
    order = await store.get_order(uow, study["order_id"])
    if report is None or order is None or report["status"] != ReportStatus.FINAL:
        raise ReportNotFound("the study has no signed report yet")
    return report, study, order


async def report_fhir(runtime: ServiceRuntime, principal: Principal, study_id: str,
                      pdf_url: str) -> dict[str, Any]:
    """The signed report as a FHIR R4 ``DiagnosticReport`` (:func:`.fhir.diagnostic_report`;
    ``pdf_url`` the PDF's public URL) with the study's automated results as labelled,
    machine-generated Observations. Raises as :func:`report_document`."""

    async def read(uow: UnitOfWork) -> dict[str, Any]:
        report, study, order = await _final_report(uow, principal, study_id)
        return fhir.diagnostic_report(report, study, order, pdf_url=pdf_url,
                                      results=await store.results_of_study(uow, study_id))

    return await runtime.transact(read, actor=principal.actor)


async def report_document(runtime: ServiceRuntime, principal: Principal, study_id: str,
                          kind: str) -> bytes:
    """The final report of a study as a document: ``kind`` ``pdf`` (PDF) or ``sr``
    (DICOM Basic Text SR, Part 10), made by :mod:`.documents` in a worker thread. Seen
    by the study's viewers (``xray.accessed`` scope ``report`` for a doctor).

    Raises:
        StudyNotFound / ReportNotFound (404: none, or not signed yet), NotTreating (403).
    """

    report, study, order = await runtime.transact(
        lambda uow: _final_report(uow, principal, study_id), actor=principal.actor)
    if kind == "pdf":
        printed = documents.printed(report, study, order)
        return await asyncio.to_thread(documents.render_pdf, printed)
    return await asyncio.to_thread(documents.basic_text_sr, report, study, order)
