"""HTTP routes (thin: parse, declare the permission, call a use case, shape the answer).

* ``/api/v1/imaging/orders`` — a doctor orders an X-ray (``ServiceRequest``) and may
  cancel it; the work list of radiographers and paramedics; one order.
* ``/api/v1/imaging/studies`` — upload an image of an order (the raw file as the
  body, its type as ``Content-Type``: ``application/dicom``, ``image/png``,
  ``image/jpeg``); a patient's studies; one study; an image's PNG preview, its file
  (streamed through the gateway) and a link to it; the automated results and
  thumbnails, the lung overlay and the TID 1500 measurement report SR
  (:mod:`.processing`); its report (``DiagnosticReport``: draft, sign, read).
* DICOMweb (``/api/v1/dicomweb/studies``): :mod:`.dicomweb_api`.

Who sees a patient's images is decided in :mod:`.service` (``viewer``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from healthflow.common.auth import Principal, require, require_any
from healthflow.common.blobs import BlobStore
from healthflow.common.http import get_runtime
from healthflow.common.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from healthflow.common.permissions import Permission as P
from healthflow.common.service import ServiceRuntime
from healthflow.xray import processing, reports, service, studies
from healthflow.xray.domain import OrderStatus
from healthflow.xray.schemas import (
    LinkOut,
    OrderIn,
    OrderOut,
    ReportIn,
    ReportOut,
    ResultsOut,
    StudyOut,
)


def get_blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.blobs
    return blobs


Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]
Blobs = Annotated[BlobStore, Depends(get_blobs)]
Id = Annotated[str, Path(max_length=64)]
VIEWERS = (P.IMAGING_READ_OWN, P.IMAGING_READ_TREATED)
UPLOAD_TYPES = ("application/dicom", "image/png", "image/jpeg")

orders = APIRouter(prefix="/api/v1/imaging/orders", tags=["imaging"])
studies_router = APIRouter(prefix="/api/v1/imaging/studies", tags=["imaging"])
routers = [orders, studies_router]
"""These routes; the DICOMweb ones are :mod:`.dicomweb_api`'s."""


@orders.post("", status_code=201, summary="Order an X-ray in an encounter you conduct")
async def order_xray(runtime: Runtime, body: OrderIn, response: Response,
                     principal: Principal = require(P.IMAGING_ORDER)) -> OrderOut:
    """422 ``unknown-encounter``; 403 ``not-your-encounter``; 409 ``encounter-state``."""
    doc = await service.order_xray(runtime, principal, body.request())
    response.headers["Location"] = f"{orders.prefix}/{doc['_id']}"
    return OrderOut.from_document(doc)


@orders.get("", summary="The work list: orders by status, stat first, oldest first")
async def worklist(runtime: Runtime, status: OrderStatus = OrderStatus.ACTIVE,
                   cursor: Annotated[str | None, Query(max_length=512)] = None,
                   limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
                   principal: Principal = require(P.IMAGING_WORKLIST)) -> Page[OrderOut]:
    """Paged by ``next_cursor``; 400 for a cursor not issued here."""
    docs, next_cursor = await service.worklist(runtime, principal, status, cursor=cursor,
                                               limit=limit)
    return Page[OrderOut](items=[OrderOut.from_document(d) for d in docs],
                          next_cursor=next_cursor)


@orders.get("/{order_id}", summary="One X-ray order")
async def read_order(runtime: Runtime, order_id: Id,
                     principal: Principal = require_any(P.IMAGING_WORKLIST, *VIEWERS)
                     ) -> OrderOut:
    return OrderOut.from_document(await service.read_order(runtime, principal, order_id))


@orders.post("/{order_id}/cancel", summary="Cancel (revoke) an active order you placed")
async def cancel_order(runtime: Runtime, order_id: Id,
                       principal: Principal = require(P.IMAGING_ORDER)) -> OrderOut:
    """``revoked``; 403 ``not-the-requester``; 409 ``order-closed`` (completed or revoked)."""
    return OrderOut.from_document(await service.cancel_order(runtime, principal, order_id))


@studies_router.post(
    "", status_code=201, summary="Upload an image of an order (DICOM, PNG or JPEG)",
    openapi_extra={"requestBody": {"required": True, "content": {
        t: {"schema": {"type": "string", "format": "binary"}} for t in UPLOAD_TYPES}}})
async def upload(runtime: Runtime, blobs: Blobs, request: Request, response: Response,
                 order_id: Annotated[str, Query(min_length=1, max_length=64)],
                 principal: Principal = require(P.IMAGING_UPLOAD)) -> StudyOut:
    """The body is streamed into storage. 422 ``invalid-image`` (its ``problem`` member
    says why), ``patient-mismatch``, ``accession-mismatch``, ``uid-not-accepted`` (a UID of
    another patient's image); 409 ``duplicate-instance`` (another file under a stored
    SOP Instance UID), ``study-of-another-order`` (of this patient); 413 too large;
    nothing is kept on any refusal. The same file sent again is 200 with its study."""
    stored = await studies.upload(runtime, blobs, principal, order_id, request.stream(),
                                  request.headers.get("content-type"))
    if stored.resent:  # the same file again: stored once, answered with its study
        response.status_code = 200
    response.headers["Location"] = f"{studies_router.prefix}/{stored.study['_id']}"
    return StudyOut.from_documents(stored.study, stored.instances, studies_router.prefix)


@studies_router.get("", summary="A patient's imaging studies, newest first")
async def list_studies(runtime: Runtime,
                       patient_id: Annotated[str, Query(min_length=1, max_length=64)],
                       principal: Principal = require_any(*VIEWERS)) -> Page[StudyOut]:
    views = await studies.list_studies(runtime, principal, patient_id)
    return Page[StudyOut](items=[StudyOut.from_documents(v.study, v.instances,
                                                         studies_router.prefix)
                                 for v in views])


@studies_router.get("/{study_id}", summary="One imaging study")
async def read_study(runtime: Runtime, study_id: Id,
                     principal: Principal = require_any(*VIEWERS)) -> StudyOut:
    view = await studies.read_study(runtime, principal, study_id)
    return StudyOut.from_documents(view.study, view.instances, studies_router.prefix)


FHIR_JSON = "application/fhir+json"


@studies_router.get("/{study_id}/fhir", summary="The study as a FHIR R4 ImagingStudy",
                    response_class=JSONResponse,
                    responses={200: {"content": {FHIR_JSON: {}}}})
async def study_fhir(runtime: Runtime, study_id: Id,
                     principal: Principal = require_any(*VIEWERS)) -> JSONResponse:
    """``application/fhir+json``; its contained ``Endpoint`` is the study's DICOMweb
    address under the gateway's public address."""
    public = runtime.settings.public_base_url.rstrip("/")
    resource = await studies.study_fhir(runtime, principal, study_id,
                                        f"{public}/api/v1/dicomweb")
    return JSONResponse(resource, media_type=FHIR_JSON,
                        headers={"Cache-Control": "private, no-store"})


@studies_router.get("/{study_id}/instances/{instance_id}/preview",
                    summary="A PNG preview of an image (windowed)", response_class=Response,
                    responses={200: {"content": {"image/png": {}}}})
async def preview(runtime: Runtime, blobs: Blobs, study_id: Id, instance_id: Id,
                  principal: Principal = require_any(*VIEWERS)) -> Response:
    png = await studies.preview(runtime, blobs, principal, study_id, instance_id)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})


@studies_router.get("/{study_id}/results",
                    summary="Automated results (machine-generated suggestions, not a diagnosis)")
async def results(runtime: Runtime, study_id: Id,
                  principal: Principal = require_any(*VIEWERS)) -> ResultsOut:
    docs = await processing.results(runtime, principal, study_id)
    return ResultsOut.from_documents(study_id, docs, studies_router.prefix)


@studies_router.get("/{study_id}/instances/{instance_id}/thumbnail",
                    summary="A PNG thumbnail of a processed image", response_class=Response,
                    responses={200: {"content": {"image/png": {}}}})
async def thumbnail(runtime: Runtime, study_id: Id, instance_id: Id,
                    principal: Principal = require_any(*VIEWERS)) -> Response:
    png = await processing.thumbnail(runtime, principal, study_id, instance_id)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})


@studies_router.get("/{study_id}/instances/{instance_id}/overlay",
                    summary="The preview with the lung boxes drawn (machine-generated)",
                    response_class=Response, responses={200: {"content": {"image/png": {}}}})
async def overlay(runtime: Runtime, blobs: Blobs, study_id: Id, instance_id: Id,
                  principal: Principal = require_any(*VIEWERS)) -> Response:
    """A PNG at the preview's size; 404 ``instance-not-found`` before processing or
    when no lung was found (or the order is not of the chest)."""
    ref = await processing.derived_blob(runtime, principal, study_id, instance_id,
                                        "overlay")
    png = b"".join([chunk async for chunk in blobs.stream(ref["key"])])
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})


@studies_router.get("/{study_id}/instances/{instance_id}/sr",
                    summary="The automated results as a DICOM Measurement Report "
                    "(TID 1500; machine-generated)", response_class=Response,
                    responses={200: {"content": {"application/dicom": {}}}})
async def measurement_sr(runtime: Runtime, blobs: Blobs, study_id: Id, instance_id: Id,
                         principal: Principal = require_any(*VIEWERS)) -> Response:
    """DICOM Part 10 Comprehensive 3D SR (:mod:`healthflow.xray.measurements`): the lung
    boxes as planar ROIs on the image and the checks as coded evaluations; for the
    clinicians who may view the preview, and for the patient once the report is signed.
    404 ``instance-not-found`` before processing, for a photograph and when no lung was
    found (not a chest image)."""
    ref = await processing.derived_blob(runtime, principal, study_id, instance_id, "sr")
    sr = b"".join([chunk async for chunk in blobs.stream(ref["key"])])
    return Response(sr, media_type="application/dicom", headers={
        "Content-Disposition": f'attachment; filename="measurements-{instance_id}.dcm"',
        "Cache-Control": "private, no-store"})


@studies_router.get("/{study_id}/instances/{instance_id}/deidentified",
                    summary="A de-identified copy of the image, for teaching and export",
                    response_class=StreamingResponse,
                    responses={200: {"content": {"application/dicom": {}}}})
async def deidentified(runtime: Runtime, blobs: Blobs, study_id: Id, instance_id: Id,
                       principal: Principal = require(P.IMAGING_EXPORT_DEIDENTIFIED)
                       ) -> StreamingResponse:
    """DICOM Part 10 (:mod:`healthflow.xray.deidentify`), streamed; every download is
    audited. 404 ``instance-not-found`` before processing, for photographs and for
    images with burned-in annotation (no copy is made of them)."""
    ref = await processing.derived_blob(runtime, principal, study_id, instance_id,
                                        "deidentified")
    return StreamingResponse(blobs.stream(ref["key"]), media_type="application/dicom",
                             headers={"Content-Length": str(ref["size"]),
                                      "Content-Disposition": "attachment; "
                                      f'filename="deidentified-{instance_id}.dcm"',
                                      "Cache-Control": "private, no-store"})


@studies_router.get("/{study_id}/instances/{instance_id}/file",
                    summary="The stored file, streamed", response_class=StreamingResponse,
                    responses={200: {"content": {t: {} for t in UPLOAD_TYPES}}})
async def download(runtime: Runtime, blobs: Blobs, study_id: Id, instance_id: Id,
                   principal: Principal = require_any(*VIEWERS)) -> StreamingResponse:
    got = await studies.download(runtime, blobs, principal, study_id, instance_id)
    return StreamingResponse(got.chunks, media_type=got.instance["content_type"], headers={
        "Content-Length": str(got.instance["blob"]["size"]),
        "Cache-Control": "private, no-store"})


@studies_router.get("/{study_id}/instances/{instance_id}/link",
                    summary="A short-lived link to the stored file")
async def link(runtime: Runtime, blobs: Blobs, study_id: Id, instance_id: Id,
               principal: Principal = require_any(*VIEWERS)) -> LinkOut:
    """``url`` is a presigned S3 GET only where S3 has a public address; the platform's
    own S3 is internal, so clients use ``file`` (through the gateway) there."""
    instance = await studies.instance(runtime, principal, study_id, instance_id, "file")
    ttl = int(getattr(runtime.settings, "link_ttl", 300))
    url = f"{studies_router.prefix}/{study_id}/instances/{instance_id}/file"
    return LinkOut(url=studies.presigned(blobs, instance, ttl), expires_in=ttl, file=url)


@studies_router.put("/{study_id}/report", summary="Write or rewrite the draft report")
async def write_report(runtime: Runtime, study_id: Id, body: ReportIn,
                       principal: Principal = require(P.IMAGING_REPORT)) -> ReportOut:
    """``preliminary``; 409 ``report-final`` once signed; 403 ``not-the-author``."""
    return ReportOut.from_document(await reports.write_report(
        runtime, principal, study_id, body.findings, body.impression))


@studies_router.post("/{study_id}/report/sign", summary="Sign the report (final)")
async def sign_report(runtime: Runtime, study_id: Id,
                      principal: Principal = require(P.IMAGING_REPORT)) -> ReportOut:
    return ReportOut.from_document(await reports.sign_report(runtime, principal, study_id))


@studies_router.get("/{study_id}/report", summary="The report of a study")
async def read_report(runtime: Runtime, study_id: Id,
                      principal: Principal = require_any(*VIEWERS)) -> ReportOut:
    """The patient sees it once final (404 before)."""
    return ReportOut.from_document(await reports.read_report(runtime, principal, study_id))



@studies_router.get("/{study_id}/report/pdf", summary="The signed report as a PDF",
                    response_class=Response,
                    responses={200: {"content": {"application/pdf": {}}}})
async def report_pdf(runtime: Runtime, study_id: Id,
                     principal: Principal = require_any(*VIEWERS)) -> Response:
    """404 ``report-not-found`` until the report is signed."""
    pdf = await reports.report_document(runtime, principal, study_id, "pdf")
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="report-{study_id}.pdf"',
        "Cache-Control": "private, no-store"})


@studies_router.get("/{study_id}/report/fhir",
                    summary="The signed report as a FHIR R4 DiagnosticReport",
                    response_class=JSONResponse,
                    responses={200: {"content": {FHIR_JSON: {}}}})
async def report_fhir(runtime: Runtime, study_id: Id,
                      principal: Principal = require_any(*VIEWERS)) -> JSONResponse:
    """``application/fhir+json``: ``final``, ``conclusion`` the impression, ``presentedForm``
    the PDF; automated results only as machine-generated Observations. 404 until signed."""
    public = runtime.settings.public_base_url.rstrip("/")
    resource = await reports.report_fhir(
        runtime, principal, study_id, f"{public}{studies_router.prefix}/{study_id}/report/pdf")
    return JSONResponse(resource, media_type=FHIR_JSON,
                        headers={"Cache-Control": "private, no-store"})


@studies_router.get("/{study_id}/report/sr",
                    summary="The signed report as a DICOM Basic Text SR",
                    response_class=Response,
                    responses={200: {"content": {"application/dicom": {}}}})
async def report_sr(runtime: Runtime, study_id: Id,
                    principal: Principal = require_any(*VIEWERS)) -> Response:
    """DICOM Part 10 in the study's Study Instance UID; 404 until signed."""
    sr = await reports.report_document(runtime, principal, study_id, "sr")
    return Response(sr, media_type="application/dicom",
                    headers={"Cache-Control": "private, no-store"})
