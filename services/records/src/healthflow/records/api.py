"""HTTP routes (thin: parse, declare the permission, call a use case, shape the answer).

* ``/api/v1/encounters`` — open a walk-in/virtual/emergency encounter, list a
  patient's, read one, finish one;
* ``/api/v1/records`` — entries of an encounter: write, list, read, history,
  correct, withdraw (``entered-in-error``); break-the-glass (emergency read access);
* ``/api/v1/fhir/Patient/{id}/$everything`` — the record as a FHIR R4 Bundle.

Ownership and care-relationship checks live in :mod:`.service` (``accessor``).
"""

from __future__ import annotations

import asyncio
import mimetypes
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from healthflow.common.auth import Principal, require, require_any
from healthflow.common.blobs import CLINICAL_DOCUMENT, PATIENT_IMAGE, BlobStore
from healthflow.common.http import get_runtime
from healthflow.common.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from healthflow.common.permissions import Permission as P
from healthflow.common.service import ServiceRuntime
from healthflow.records import care, documents, entries, export, plans, service
from healthflow.records.document_schemas import DocumentOut, DocumentWithdrawalIn, LinkOut
from healthflow.records.domain import DocumentCategory, ResourceType
from healthflow.records.prescriptions import PrescriptionClient
from healthflow.records.schemas import (
    BreakTheGlassIn,
    CarePlanCorrectionIn,
    CarePlanIn,
    CorrectionIn,
    EmergencyAccessOut,
    EncounterIn,
    EncounterOut,
    EntryOut,
    EntryVersionOut,
    NewEntryIn,
    PlanStatusIn,
    ProcedureCorrectionIn,
    ProcedureIn,
    WithdrawalIn,
)
from healthflow.records.settings import settings_of

NO_STORE = {"Cache-Control": "no-store"}
"""A file or a link to it is not kept by any cache (RFC 9111 §5.2.2.5)."""


def get_blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.blobs
    return blobs


def get_inspections(request: Request) -> asyncio.Semaphore:
    slots: asyncio.Semaphore = request.app.state.inspections
    return slots


def get_prescriptions(request: Request) -> PrescriptionClient:
    client: PrescriptionClient = request.app.state.prescriptions
    return client


Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]
Blobs = Annotated[BlobStore, Depends(get_blobs)]
Prescriptions = Annotated[PrescriptionClient, Depends(get_prescriptions)]
Inspections = Annotated[asyncio.Semaphore, Depends(get_inspections)]
Id = Annotated[str, Path(max_length=64)]
PatientId = Annotated[str, Query(min_length=1, max_length=64)]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the last page")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
READERS = (P.RECORDS_READ_OWN, P.RECORDS_READ_TREATED, P.RECORDS_READ_ANY)
OPENERS = (P.RECORDS_WRITE_TREATED, P.ENCOUNTERS_OPEN_ANY)

encounters = APIRouter(prefix="/api/v1/encounters", tags=["encounters"])
records = APIRouter(prefix="/api/v1/records", tags=["records"])
fhir = APIRouter(prefix="/api/v1/fhir", tags=["fhir"])
care_plans = APIRouter(prefix="/api/v1/care-plans", tags=["care-plans"])
procedures = APIRouter(prefix="/api/v1/procedures", tags=["procedures"])
documents_router = APIRouter(prefix="/api/v1/documents", tags=["documents"])
routers = [encounters, records, care_plans, procedures, documents_router, fhir]
UPLOAD_PATH = documents_router.prefix
"""The one route whose body may be large (streamed into storage, never parsed whole)."""
FILE_TYPES = sorted(CLINICAL_DOCUMENT.allowed_types | PATIENT_IMAGE.allowed_types)


@encounters.post("", status_code=201, summary="Open a walk-in, virtual or emergency encounter")
async def open_encounter(runtime: Runtime, body: EncounterIn, response: Response,
                         principal: Principal = require_any(*OPENERS)) -> EncounterOut:
    """In progress from now; encounters of appointments open at check-in by themselves.

    422 ``unknown-patient``; 403 for a doctor naming another doctor.
    """
    doc = await service.open_encounter(runtime, principal, body)
    response.headers["Location"] = f"{encounters.prefix}/{doc['_id']}"
    return EncounterOut.from_document(doc)


@encounters.get("", summary="A patient's encounters, oldest first, a page at a time")
async def list_encounters(runtime: Runtime, patient_id: PatientId, cursor: Cursor = None,
                          limit: Limit = DEFAULT_LIMIT,
                          principal: Principal = require_any(*READERS)) -> Page[EncounterOut]:
    docs, next_cursor = await service.list_encounters(runtime, principal, patient_id,
                                                      cursor=cursor, limit=limit)
    return Page[EncounterOut](items=[EncounterOut.from_document(d) for d in docs],
                              next_cursor=next_cursor)


@encounters.get("/{encounter_id}", summary="One encounter")
async def get_encounter(runtime: Runtime, encounter_id: Id,
                        principal: Principal = require_any(*READERS)) -> EncounterOut:
    """404 for a patient asking for another patient's; 403 ``not-treating``."""
    return EncounterOut.from_document(
        await service.read_encounter(runtime, principal, encounter_id))


@encounters.post("/{encounter_id}/finish", summary="Finish an in-progress encounter now")
async def finish_encounter(runtime: Runtime, encounter_id: Id,
                           principal: Principal = require_any(*OPENERS)) -> EncounterOut:
    """409 ``encounter-state`` unless in progress."""
    return EncounterOut.from_document(
        await service.finish_encounter(runtime, principal, encounter_id))


@records.post("/patients/{patient_id}/break-the-glass", status_code=201,
              summary="Emergency access to a patient's record without a care relationship")
async def break_the_glass(runtime: Runtime, patient_id: Id, body: BreakTheGlassIn,
                          principal: Principal = require(P.RECORDS_READ_TREATED)
                          ) -> EmergencyAccessOut:
    """Read-only, for ``break_glass_minutes``; the patient is told and the audit log marks
    it for review. 422 without a reason or for an unknown patient; 403 ``own-record``."""
    grant = await care.break_the_glass(runtime, principal, patient_id, body.reason)
    return EmergencyAccessOut(id=grant["_id"], patient_id=patient_id,
                              granted_at=grant["granted_at"], expires_at=grant["expires_at"])


@records.post("/encounters/{encounter_id}/entries", status_code=201,
              summary="Write a diagnosis, observation or medication in an encounter")
async def add_entry(runtime: Runtime, encounter_id: Id, body: NewEntryIn, response: Response,
                    principal: Principal = require(P.RECORDS_WRITE_TREATED)) -> EntryOut:
    """Version 1; 409 ``encounter-state`` while the encounter is planned or cancelled."""
    head = await entries.add_entry(runtime, principal, encounter_id, body)
    response.headers["Location"] = f"{records.prefix}/entries/{head['_id']}"
    return EntryOut.from_document(head)


@records.get("/encounters/{encounter_id}/entries",
             summary="The entries of an encounter, oldest first, a page at a time")
async def list_entries(runtime: Runtime, encounter_id: Id, cursor: Cursor = None,
                       limit: Limit = DEFAULT_LIMIT,
                       principal: Principal = require_any(*READERS)) -> Page[EntryOut]:
    heads, next_cursor = await entries.entries_of_encounter(
        runtime, principal, encounter_id, cursor=cursor, limit=limit)
    return Page[EntryOut](items=[EntryOut.from_document(h) for h in heads],
                          next_cursor=next_cursor)


@records.get("/entries/{entry_id}", summary="The current version of an entry")
async def get_entry(runtime: Runtime, entry_id: Id,
                    principal: Principal = require_any(*READERS)) -> EntryOut:
    return EntryOut.from_document(await entries.read_entry(runtime, principal, entry_id))


@records.get("/entries/{entry_id}/history", summary="Every version of an entry")
async def get_history(runtime: Runtime, entry_id: Id,
                      principal: Principal = require_any(*READERS)) -> list[EntryVersionOut]:
    return [EntryVersionOut.from_document(v)
            for v in await entries.entry_history(runtime, principal, entry_id)]


@records.post("/entries/{entry_id}/corrections", summary="Correct an entry (a new version)")
async def correct_entry(runtime: Runtime, entry_id: Id, body: CorrectionIn,
                        principal: Principal = require(P.RECORDS_WRITE_TREATED)) -> EntryOut:
    """409 ``version-conflict`` when ``version`` is not the current one."""
    return EntryOut.from_document(await entries.correct_entry(runtime, principal, entry_id, body))


@records.post("/entries/{entry_id}/entered-in-error", summary="Withdraw an entry")
async def withdraw_entry(runtime: Runtime, entry_id: Id, body: WithdrawalIn,
                         principal: Principal = require(P.RECORDS_WRITE_TREATED)) -> EntryOut:
    """A new version with status ``entered-in-error``; nothing is deleted."""
    return EntryOut.from_document(
        await entries.withdraw_entry(runtime, principal, entry_id, body))


@care_plans.post("", status_code=201, summary="Write a treatment plan in an encounter")
async def create_plan(runtime: Runtime, body: CarePlanIn, response: Response,
                      principal: Principal = require(P.RECORDS_WRITE_TREATED)) -> EntryOut:
    """Version 1, ``draft`` or ``active``; 422 ``unknown-reference`` for ``addresses``."""
    head = await plans.create_plan(runtime, principal, body)
    response.headers["Location"] = f"{care_plans.prefix}/{head['_id']}"
    return EntryOut.from_document(head)


@care_plans.get("", summary="A patient's treatment plans, oldest first, a page at a time")
async def list_plans(runtime: Runtime, patient_id: PatientId, cursor: Cursor = None,
                     limit: Limit = DEFAULT_LIMIT,
                     principal: Principal = require_any(*READERS)) -> Page[EntryOut]:
    docs, next_cursor = await plans.list_of_patient(
        runtime, principal, patient_id, ResourceType.CARE_PLAN, cursor=cursor, limit=limit)
    return Page[EntryOut](items=[EntryOut.from_document(d) for d in docs],
                          next_cursor=next_cursor)


@care_plans.get("/{plan_id}", summary="The current version of a treatment plan")
async def get_plan(runtime: Runtime, plan_id: Id,
                   principal: Principal = require_any(*READERS)) -> EntryOut:
    return EntryOut.from_document(
        await plans.read_one(runtime, principal, plan_id, ResourceType.CARE_PLAN))


@care_plans.post("/{plan_id}/corrections", summary="Correct a plan's content (a new version)")
async def correct_plan(runtime: Runtime, plan_id: Id, body: CarePlanCorrectionIn,
                       principal: Principal = require(P.RECORDS_WRITE_TREATED)) -> EntryOut:
    """Status kept; 409 ``version-conflict``; history at ``/records/entries/{id}/history``."""
    return EntryOut.from_document(await plans.correct_plan(runtime, principal, plan_id, body))


@care_plans.post("/{plan_id}/status", summary="Activate, complete or revoke a plan")
async def move_plan(runtime: Runtime, plan_id: Id, body: PlanStatusIn,
                    principal: Principal = require(P.RECORDS_WRITE_TREATED)) -> EntryOut:
    """draft → active → completed / revoked (a reason to revoke); 409 ``careplan-state``."""
    return EntryOut.from_document(await plans.move_plan(runtime, principal, plan_id, body))


@procedures.post("", status_code=201, summary="Record a procedure done in an encounter")
async def record_procedure(runtime: Runtime, body: ProcedureIn, response: Response,
                           principal: Principal = require(P.RECORDS_WRITE_TREATED)) -> EntryOut:
    """Version 1; 422 ``unknown-reference`` for ``care_plan_id``."""
    head = await plans.record_procedure(runtime, principal, body)
    response.headers["Location"] = f"{procedures.prefix}/{head['_id']}"
    return EntryOut.from_document(head)


@procedures.get("", summary="A patient's procedures, oldest first, a page at a time")
async def list_procedures(runtime: Runtime, patient_id: PatientId, cursor: Cursor = None,
                          limit: Limit = DEFAULT_LIMIT,
                          principal: Principal = require_any(*READERS)) -> Page[EntryOut]:
    docs, next_cursor = await plans.list_of_patient(
        runtime, principal, patient_id, ResourceType.PROCEDURE, cursor=cursor, limit=limit)
    return Page[EntryOut](items=[EntryOut.from_document(d) for d in docs],
                          next_cursor=next_cursor)


@procedures.get("/{procedure_id}", summary="The current version of a procedure")
async def get_procedure(runtime: Runtime, procedure_id: Id,
                        principal: Principal = require_any(*READERS)) -> EntryOut:
    return EntryOut.from_document(
        await plans.read_one(runtime, principal, procedure_id, ResourceType.PROCEDURE))


@procedures.post("/{procedure_id}/corrections", summary="Correct a procedure (a new version)")
async def correct_procedure(runtime: Runtime, procedure_id: Id, body: ProcedureCorrectionIn,
                            principal: Principal = require(P.RECORDS_WRITE_TREATED)
                            ) -> EntryOut:
    return EntryOut.from_document(
        await plans.correct_procedure(runtime, principal, procedure_id, body))


@documents_router.post(
    "", status_code=201, summary="Upload a clinical document (PDF, PNG, JPEG) or a patient image",
    openapi_extra={"requestBody": {"required": True, "content": {
        t: {"schema": {"type": "string", "format": "binary"}} for t in FILE_TYPES}}})
async def upload_document(runtime: Runtime, blobs: Blobs, inspections: Inspections,
                          request: Request, response: Response,
                          encounter_id: Annotated[str, Query(min_length=1, max_length=64)],
                          category: DocumentCategory,
                          principal: Principal = require(P.RECORDS_WRITE_TREATED)
                          ) -> DocumentOut:
    """The raw file is the body, its type the ``Content-Type``; streamed into storage.
    ``photo`` takes PNG, JPEG or WebP (20 MiB), the others PDF, PNG or JPEG (50 MiB).
    422 ``invalid-document`` (its ``problem`` member says why: ``type-mismatch``,
    ``unreadable-pdf``, ``unreadable-image``, …); 413 too large; 415 without a
    ``Content-Type``; nothing is kept."""
    doc = await documents.upload(runtime, blobs, principal, encounter_id, category,
                                 request.stream(), request.headers.get("content-type"),
                                 inspections=inspections)
    response.headers["Location"] = f"{documents_router.prefix}/{doc['_id']}"
    return DocumentOut.from_document(doc, documents_router.prefix)


@documents_router.get("", summary="A patient's documents and images, oldest first, paged")
async def list_documents(runtime: Runtime, patient_id: PatientId, cursor: Cursor = None,
                         limit: Limit = DEFAULT_LIMIT,
                         principal: Principal = require_any(*READERS)) -> Page[DocumentOut]:
    docs, next_cursor = await documents.list_documents(runtime, principal, patient_id,
                                                       cursor=cursor, limit=limit)
    return Page[DocumentOut](
        items=[DocumentOut.from_document(d, documents_router.prefix) for d in docs],
        next_cursor=next_cursor)


@documents_router.get("/{document_id}", summary="A document's metadata")
async def get_document(runtime: Runtime, document_id: Id,
                       principal: Principal = require_any(*READERS)) -> DocumentOut:
    return DocumentOut.from_document(
        await documents.read_document(runtime, principal, document_id),
        documents_router.prefix)


@documents_router.post("/{document_id}/entered-in-error", summary="Withdraw a document")
async def withdraw_document(runtime: Runtime, document_id: Id, body: DocumentWithdrawalIn,
                            principal: Principal = require(P.RECORDS_WRITE_TREATED)
                            ) -> DocumentOut:
    """Marked ``entered-in-error`` (filed by mistake), never deleted: the file stays
    readable to its uploader and treating doctors only (410 ``document-withdrawn`` for
    others); 409 ``document-entered-in-error`` when it already is."""
    return DocumentOut.from_document(
        await documents.withdraw(runtime, principal, document_id, body.reason),
        documents_router.prefix)


@documents_router.get("/{document_id}/file", summary="The stored file, streamed",
                      response_class=StreamingResponse,
                      responses={200: {"content": {t: {} for t in FILE_TYPES}}})
async def download_document(runtime: Runtime, blobs: Blobs, document_id: Id,
                            principal: Principal = require_any(*READERS)
                            ) -> StreamingResponse:
    """Sent as an attachment (``Content-Disposition``, RFC 6266), never cached
    (``no-store``) nor type-sniffed (``nosniff``): a stored file is not rendered inline
    under the platform's origin."""
    got = await documents.download(runtime, blobs, principal, document_id)
    extension = mimetypes.guess_extension(got.document["content_type"]) or ""
    return StreamingResponse(got.chunks, media_type=got.document["content_type"], headers={
        "Content-Length": str(got.document["blob"]["size"]), **NO_STORE,
        "Content-Disposition": f'attachment; filename="{document_id}{extension}"',
        "X-Content-Type-Options": "nosniff"})


@documents_router.get("/{document_id}/link", summary="A short-lived link to the stored file")
async def document_link(runtime: Runtime, blobs: Blobs, response: Response, document_id: Id,
                        principal: Principal = require_any(*READERS)) -> LinkOut:
    """``url`` is a presigned S3 GET (valid ``link_ttl`` seconds, 60 by default) only
    where S3 has a public address; the platform's own S3 is internal, so clients use
    ``file`` (through the gateway) there. The answer is never cached (``no-store``)."""
    doc = await documents.read_document(runtime, principal, document_id, documents.FILE_SCOPE)
    ttl = settings_of(runtime).link_ttl
    response.headers.update(NO_STORE)
    return LinkOut(url=documents.presigned(blobs, doc, ttl), expires_in=ttl,
                   file=f"{documents_router.prefix}/{document_id}/file")


@fhir.get("/Patient/{patient_id}/$everything", summary="The record as a FHIR R4 Bundle",
          response_class=JSONResponse,
          responses={200: {"content": {"application/fhir+json": {}}}})
async def patient_everything(
        runtime: Runtime, prescriptions: Prescriptions, patient_id: Id,
        count: Annotated[int, Query(alias="_count", ge=1, le=export.MAX_COUNT)]
        = export.DEFAULT_COUNT,
        cursor: Annotated[str | None, Query(alias="_cursor", max_length=512)] = None,
        principal: Principal = require_any(*READERS)) -> JSONResponse:
    """A ``searchset`` Bundle: Patient, Encounters, Conditions, Observations,
    MedicationStatements, CarePlans, Procedures, DocumentReferences and the
    prescription service's MedicationRequests (read with the caller's token; when they
    cannot be read, an ``OperationOutcome`` warning instead, still 200)
    (``application/fhir+json``), ``_count`` resources a page, the next page at the
    ``next`` link (400 for a cursor not issued here). ``fullUrl``s are under the
    gateway's configured public address (``public_base_url``), never the service's
    internal one nor a ``Host`` the client chose."""
    public = runtime.settings.public_base_url.rstrip("/")
    bundle: dict[str, Any] = await export.everything(
        runtime, prescriptions, principal, patient_id, base_url=public + fhir.prefix,
        documents_url=public + documents_router.prefix, count=count, cursor=cursor)
    return JSONResponse(bundle, media_type="application/fhir+json")
