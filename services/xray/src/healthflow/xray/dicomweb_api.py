"""DICOMweb routes for viewers (OHIF and others), under ``/api/v1/dicomweb/studies``
(thin, as :mod:`.api`): QIDO-RS search, WADO-RS retrieve (instances, metadata, frames,
rendered frames), STOW-RS store (DICOM PS3.18). Access is the images'
(:func:`healthflow.xray.service.viewer`), each view audited (``xray.accessed``, scope
``dicomweb``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from healthflow.common.auth import Principal, require, require_any
from healthflow.common.blobs import BlobStore
from healthflow.common.pagination import DEFAULT_LIMIT, MAX_LIMIT
from healthflow.common.permissions import Permission as P
from healthflow.common.service import ServiceRuntime
from healthflow.xray import dicomweb, render, stow, wado_frames
from healthflow.xray import wado_metadata as wado_metadata_
from healthflow.xray.api import VIEWERS, Blobs, Runtime, studies_router
from healthflow.xray.dicomweb import frame_number, rendered_type

router = APIRouter(prefix="/api/v1/dicomweb/studies", tags=["dicomweb"])
UPLOAD_PATHS = (studies_router.prefix, router.prefix)
"""The routes (POST) whose body may be large (streamed into storage, never parsed whole):
the upload and STOW-RS."""
DICOM_JSON = "application/dicom+json"
Uid = Annotated[str, Path(max_length=64, pattern=r"^[0-9.]+$")]


def _dicom_json(items: list[dict[str, object]]) -> JSONResponse:
    return JSONResponse(items, media_type=DICOM_JSON,
                        headers={"Cache-Control": "private, no-store"})


def _wado(found: dicomweb.StudyInstances, blobs: BlobStore) -> StreamingResponse:
    answer = dicomweb.multipart(blobs, found.instances)
    return StreamingResponse(answer.body, media_type=answer.content_type,
                             headers={"Cache-Control": "private, no-store"})


@router.get("", summary="QIDO-RS: search for studies",
                     response_class=JSONResponse,
                     responses={200: {"content": {DICOM_JSON: {}}}})
async def qido_studies(runtime: Runtime,
                       patient_id: Annotated[str | None, Query(alias="PatientID",
                                                               max_length=64)] = None,
                       study_uid: Annotated[str | None, Query(alias="StudyInstanceUID",
                                                              max_length=64)] = None,
                       limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
                       offset: Annotated[int, Query(ge=0)] = 0,
                       principal: Principal = require_any(*VIEWERS)) -> JSONResponse:
    """Match keys ``PatientID`` (required of doctors) and ``StudyInstanceUID``; other
    keys are ignored. 400 without ``PatientID`` for a doctor; 403 ``not-treating``.
    A patient matches their own studies only (another ``PatientID``: 200 ``[]``)."""
    found = await dicomweb.search_studies(runtime, principal, patient_id, study_uid)
    base = f"{runtime.settings.public_base_url}{router.prefix}"
    return _dicom_json([dicomweb.study_json(f.study, f.instances, f.accession_number,
                                            f"{base}/{f.study['study_uid']}")
                        for f in found[offset:offset + limit]])


@router.get("/{study_uid}/series", summary="QIDO-RS: the series of a study",
                     response_class=JSONResponse,
                     responses={200: {"content": {DICOM_JSON: {}}}})
async def qido_series(runtime: Runtime, study_uid: Uid,
                      modality: Annotated[str | None, Query(alias="Modality",
                                                            max_length=16)] = None,
                      principal: Principal = require_any(*VIEWERS)) -> JSONResponse:
    """Match key ``Modality`` (e.g. ``SR``: the measurement report's series)."""
    found = await dicomweb.study_instances(runtime, principal, study_uid)
    return _dicom_json(dicomweb.series_of(found, modality))


@router.get("/{study_uid}/instances", summary="QIDO-RS: the instances of a study",
                     response_class=JSONResponse,
                     responses={200: {"content": {DICOM_JSON: {}}}})
@router.get("/{study_uid}/series/{series_uid}/instances",
                     summary="QIDO-RS: the instances of a series",
                     response_class=JSONResponse,
                     responses={200: {"content": {DICOM_JSON: {}}}})
async def qido_instances(runtime: Runtime, study_uid: Uid, series_uid: Uid | None = None,
                         principal: Principal = require_any(*VIEWERS)) -> JSONResponse:
    found = await dicomweb.study_instances(runtime, principal, study_uid, series_uid)
    return _dicom_json([dicomweb.instance_json(study_uid, i) for i in found.instances])


WADO: dict[int | str, dict[str, Any]] = {
    200: {"content": {'multipart/related; type="application/dicom"': {}}}}


@router.get("/{study_uid}", summary="WADO-RS: the instances of a study",
                     response_class=StreamingResponse, responses=WADO)
@router.get("/{study_uid}/series/{series_uid}",
                     summary="WADO-RS: the instances of a series",
                     response_class=StreamingResponse, responses=WADO)
@router.get("/{study_uid}/series/{series_uid}/instances/{sop_uid}",
                     summary="WADO-RS: one instance",
                     response_class=StreamingResponse, responses=WADO)
async def wado(runtime: Runtime, blobs: Blobs, request: Request, study_uid: Uid,
               series_uid: Uid | None = None, sop_uid: Uid | None = None,
               principal: Principal = require_any(*VIEWERS)) -> StreamingResponse:
    """Each stored file as one ``application/dicom`` part; 404 ``study-not-found``; 406
    ``not-acceptable`` when ``Accept`` does not take that (:func:`dicomweb.check_retrievable`)."""
    found = await dicomweb.study_instances(runtime, principal, study_uid, series_uid,
                                           sop_uid)
    dicomweb.check_retrievable(request.headers.get("accept"), found.instances)
    return _wado(found, blobs)


@router.get("/{study_uid}/metadata", summary="WADO-RS: a study's metadata",
                     response_class=JSONResponse, responses={200: {"content": {DICOM_JSON: {}}}})
@router.get("/{study_uid}/series/{series_uid}/metadata",
                     summary="WADO-RS: a series' metadata", response_class=JSONResponse,
                     responses={200: {"content": {DICOM_JSON: {}}}})
@router.get("/{study_uid}/series/{series_uid}/instances/{sop_uid}/metadata",
                     summary="WADO-RS: an instance's metadata", response_class=JSONResponse,
                     responses={200: {"content": {DICOM_JSON: {}}}})
async def wado_metadata(runtime: Runtime, blobs: Blobs, request: Request, study_uid: Uid,
                        series_uid: Uid | None = None, sop_uid: Uid | None = None,
                        principal: Principal = require_any(*VIEWERS)) -> JSONResponse:
    """Each DICOM instance's header in the DICOM JSON Model (:mod:`.wado_metadata`);
    404 ``study-not-found``, 403 ``not-treating``, 406 for an ``Accept`` without it."""
    wado_metadata_.check_accept(request.headers.get("accept"))
    base = f"{runtime.settings.public_base_url}{router.prefix}"
    return _dicom_json(await wado_metadata_.metadata(runtime, blobs, principal, study_uid,
                                                     series_uid, sop_uid, base))


@router.get("/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/{frames}",
            summary="WADO-RS: frames' pixel data (multipart/related)",
            response_class=StreamingResponse, responses={200: {"content": {
                wado_frames.OCTET_STREAM: {}, wado_frames.JP2: {}}}})
async def frames(runtime: Runtime, blobs: Blobs, request: Request, study_uid: Uid,
                 series_uid: Uid, sop_uid: Uid, frames: Annotated[str, Path(max_length=200)],
                 principal: Principal = require_any(*VIEWERS)) -> StreamingResponse:
    """The frames (``1,2,…``) of one instance, one part each (:mod:`.wado_frames`):
    uncompressed ``application/octet-stream`` unless ``Accept`` asks for a JPEG 2000
    instance's own codestreams (``image/jp2``); 400 for a malformed frame list, 404
    ``frame-not-found`` beyond the instance's frames (an SR has none), 406 otherwise."""
    answer = await wado_frames.frames(runtime, blobs, principal, (study_uid, series_uid,
                                      sop_uid), wado_frames.frame_list(frames),
                                      request.headers.get("accept"))
    return StreamingResponse(answer.body, media_type=answer.content_type,
                             headers={"Cache-Control": "private, no-store", "Vary": "Accept"})


RENDERED: dict[int | str, dict[str, Any]] = {
    200: {"content": {t: {} for t in render.RENDERED_FORMATS}}}
WindowParam = Annotated[str | None, Query(max_length=100, description=(
    "center,width,function (linear, linear-exact, sigmoid): PS3.18 §8.3.5.1.4"))]
ViewportParam = Annotated[str | None, Query(max_length=100, description=(
    "vw,vh[,sx,sy,sw,sh]: PS3.18 §8.3.5.1.3"))]


async def _rendered(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
                    request: Request, uids: tuple[str, str, str], frame: int,
                    window: str | None, viewport: str | None) -> Response:
    chosen, fit = dicomweb.voi_window(window), dicomweb.viewport_size(viewport)
    media_type = rendered_type(request.headers.get("accept"), tuple(render.RENDERED_FORMATS))
    image = await dicomweb.rendered_frame(runtime, blobs, principal, *uids, frame,
                                          media_type, chosen, fit)
    return Response(image, media_type=media_type, headers={
        "Cache-Control": "private, no-store", "Vary": "Accept"})


@router.get(
    "/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/{frames}/rendered",
    summary="WADO-RS: one frame rendered (JPEG or PNG)", response_class=Response,
    responses=RENDERED)
async def rendered_frame(runtime: Runtime, blobs: Blobs, request: Request, study_uid: Uid,
                         series_uid: Uid, sop_uid: Uid,
                         frames: Annotated[str, Path(max_length=32)],
                         window: WindowParam = None, viewport: ViewportParam = None,
                         principal: Principal = require_any(*VIEWERS)) -> Response:
    """``image/jpeg`` unless ``Accept`` prefers ``image/png``: 406 ``not-acceptable`` for
    anything else; 400 for a frame list or number below 1, a malformed ``window``
    (``center,width,function``: ``linear``, ``linear-exact``, ``sigmoid``) or
    ``viewport`` (``vw,vh[,sx,sy,sw,sh]``, the region inside the image), the problem's
    ``parameter`` naming which; 404 ``frame-not-found`` beyond the instance's frames (an
    SR has none), ``study-not-found`` for no such instance."""
    return await _rendered(runtime, blobs, principal, request,
                           (study_uid, series_uid, sop_uid), frame_number(frames), window,
                           viewport)


@router.get(
    "/{study_uid}/series/{series_uid}/instances/{sop_uid}/rendered",
    summary="WADO-RS: an instance rendered (JPEG or PNG)", response_class=Response,
    responses=RENDERED)
async def rendered_instance(runtime: Runtime, blobs: Blobs, request: Request,
                            study_uid: Uid, series_uid: Uid, sop_uid: Uid,
                            window: WindowParam = None, viewport: ViewportParam = None,
                            principal: Principal = require_any(*VIEWERS)) -> Response:
    """PS3.18 §9.5: the images here are single-frame, so this is its frame 1, answered
    as ``…/frames/1/rendered`` is."""
    return await _rendered(runtime, blobs, principal, request,
                           (study_uid, series_uid, sop_uid), 1, window, viewport)


@router.post(
    "", summary="STOW-RS: store DICOM instances (multipart/related)",
    response_class=JSONResponse, responses={
        200: {"content": {DICOM_JSON: {}}}, 202: {"content": {DICOM_JSON: {}}},
        409: {"content": {DICOM_JSON: {}}}},
    openapi_extra={"requestBody": {"required": True, "content": {
        'multipart/related; type="application/dicom"': {
            "schema": {"type": "string", "format": "binary"}}}}})
async def stow_rs(runtime: Runtime, blobs: Blobs, request: Request,
                  principal: Principal = require(P.IMAGING_UPLOAD)) -> JSONResponse:
    """Each part is stored like a C-STORE instance (its order by Accession Number):
    200 all stored, 202 some, 409 none (Failed SOP Sequence says why); 415 not
    multipart/related DICOM; 400 malformed."""
    base = f"{runtime.settings.public_base_url}{router.prefix}"
    result = await stow.store_instances(runtime, blobs, principal,
                                        request.headers.get("content-type"),
                                        request.stream(), base)
    return JSONResponse(result.body, status_code=result.status, media_type=DICOM_JSON)
