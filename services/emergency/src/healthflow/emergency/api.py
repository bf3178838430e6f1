"""HTTP routes under ``/api/v1/emergencies`` (thin; access rules live in the service)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from healthflow.common.auth import Principal, require, require_any, while_authorized
from healthflow.common.http import get_runtime
from healthflow.common.permissions import Permission as P
from healthflow.common.service import ServiceRuntime
from healthflow.emergency import photos, service, store
from healthflow.emergency.assignment import ParamedicClient
from healthflow.emergency.schemas import (
    EmergencyOut,
    PhotoOut,
    PositionIn,
    PriorityIn,
    RaiseIn,
    StatusIn,
)
from healthflow.emergency.settings import Settings

Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]
EmergencyId = Annotated[str, Path(max_length=64)]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
    description="A fresh random value per raise (a UUID): a retry with the same key and "
                "body returns the first raise's emergency instead of raising another")]

PhotoId = Annotated[str, Path(max_length=64)]
READERS = (P.EMERGENCIES_READ_OWN, P.EMERGENCIES_DISPATCH, P.EMERGENCIES_UPDATE_ASSIGNED)
RAISERS = (P.EMERGENCIES_RAISE_OWN, P.EMERGENCIES_DISPATCH, P.EMERGENCIES_RAISE_CLINICAL)


def get_photos(request: Request) -> photos.PhotoStore:
    store_: photos.PhotoStore = request.app.state.photos
    return store_


Photos = Annotated[photos.PhotoStore, Depends(get_photos)]


def get_paramedics(request: Request) -> ParamedicClient:
    client: ParamedicClient = request.app.state.paramedics
    return client


Paramedics = Annotated[ParamedicClient, Depends(get_paramedics)]
ASSIGN_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False, "required": ["unit_id", "reason"],
    "properties": {"unit_id": {"type": "string", "minLength": 1, "maxLength": 128},
                   "reason": {"type": "string", "description": "a reassignment reason code "
                              "of the paramedic service (e.g. nearer_unit)"}}}}}}}

router = APIRouter(prefix="/api/v1/emergencies", tags=["emergencies"])
PHOTOS_PATH = router.prefix + "/{emergency_id}/photos"
"""The one route whose body may be large (streamed into storage, never parsed whole)."""


@router.post("", status_code=201,
             summary="Raise an emergency (a patient, a dispatcher, or a clinician)")
async def raise_emergency(
    runtime: Runtime, body: RaiseIn, response: Response,
    principal: Principal = require_any(P.EMERGENCIES_RAISE_OWN, P.EMERGENCIES_DISPATCH,
                                       P.EMERGENCIES_RAISE_CLINICAL),
    idempotency_key: IdempotencyKey = None,
) -> EmergencyOut:
    """Triaged P1–P4 from ``triage``; 422 ``no-location`` without a position (or, for a
    dispatcher or clinician, an address); 422 for a ``patient_id`` from a non-clinician.
    ``Idempotency-Key`` (1–255 visible ASCII characters): a
    retry with the same key and body, on any process, answers 201 with the emergency the
    first one created; with another body 422 ``idempotency-key-reused``."""
    doc = await service.raise_emergency(runtime, principal, body, idempotency_key)
    response.headers["Location"] = f"{router.prefix}/{doc['_id']}"
    return EmergencyOut.from_document(doc)


@router.get("", summary="The dispatchers' board: open emergencies, P1 first, oldest first")
async def board(runtime: Runtime,
                principal: Principal = require(P.EMERGENCIES_DISPATCH)) -> list[EmergencyOut]:
    return [EmergencyOut.from_document(d) for d in await service.board(runtime)]


@router.get("/stream", summary="The dispatchers' board live, as Server-Sent Events",
            response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream_board(request: Request, runtime: Runtime,
                       principal: Principal = require(P.EMERGENCIES_DISPATCH)
                       ) -> EventSourceResponse:
    """``text/event-stream`` (WHATWG HTML §9.2): an ``emergency`` event (``data`` = the
    EmergencyOut JSON) for every open emergency now (P1 first, oldest first), then one
    per emergency raised or changed (closed and cancelled ones too, so the board drops
    them), from a change stream opened before the first read; ``: ping`` every
    ``stream_heartbeat_s`` seconds."""
    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(retry=3000, comment="stream open")
        async with await store.watch_all(runtime.db) as changes:
            for doc in await service.board(runtime):
                yield _emergency_event(doc)
            async for change in changes:
                if change.get("fullDocument") is not None:
                    yield _emergency_event(change["fullDocument"])

    return _sse(request, principal, runtime, events())


@router.get("/{emergency_id}", summary="One emergency: its raiser, dispatchers, its crew")
async def get_one(
    runtime: Runtime, emergency_id: EmergencyId,
    principal: Principal = require_any(P.EMERGENCIES_READ_OWN, P.EMERGENCIES_DISPATCH,
                                       P.EMERGENCIES_UPDATE_ASSIGNED),
) -> EmergencyOut:
    """404 ``emergency-not-found`` also for one the caller may not see."""
    return EmergencyOut.from_document(await service.get(runtime, principal, emergency_id))


@router.get("/{emergency_id}/stream", summary="One emergency live, as Server-Sent Events",
            response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream_one(
    request: Request, runtime: Runtime, emergency_id: EmergencyId,
    principal: Principal = require_any(P.EMERGENCIES_READ_OWN, P.EMERGENCIES_DISPATCH,
                                       P.EMERGENCIES_UPDATE_ASSIGNED),
) -> EventSourceResponse:
    """``text/event-stream`` (WHATWG HTML §9.2) for whoever may read the emergency (404
    otherwise): an ``emergency`` event (``data`` = the EmergencyOut JSON, with
    ``responder``: call sign and live ETA) now and after every change, from a change
    stream opened before the first read (no polling, nothing missed); ``: ping``
    every ``stream_heartbeat_s`` seconds. Ends after a closed or cancelled one, and
    when the caller may no longer read it (a crew reassigned away)."""
    await service.get(runtime, principal, emergency_id)

    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(retry=3000, comment="stream open")
        async with await store.watch(runtime.db, emergency_id) as changes:
            doc = await service.get(runtime, principal, emergency_id)
            yield _emergency_event(doc)
            async for change in changes:
                if change.get("fullDocument") is None:
                    continue
                doc = change["fullDocument"]
                if not service.visible(principal, doc):  # e.g. a crew reassigned away
                    return
                yield _emergency_event(doc)
                if doc["status"] in ("closed", "cancelled"):
                    return

    return _sse(request, principal, runtime, events())


def _sse(request: Request, principal: Principal, runtime: ServiceRuntime,
         events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    """The response of a stream: ``: ping`` every heartbeat, and the caller's token
    re-checked then and on every revocation (an ``unauthorized`` event ends it)."""
    settings = runtime.settings
    assert isinstance(settings, Settings)
    guarded = while_authorized(request, principal, events,
                               heartbeat=settings.stream_heartbeat_s)
    return EventSourceResponse(guarded, ping=settings.stream_heartbeat_s, sep="\n",
                               headers={"Cache-Control": "no-cache",
                                        "X-Accel-Buffering": "no"})


def _emergency_event(doc: dict[str, object]) -> ServerSentEvent:
    return ServerSentEvent(event="emergency",
                           data=EmergencyOut.from_document(doc).model_dump_json())


@router.post("/{emergency_id}/status", summary="The next step of the lifecycle, or cancel")
async def change_status(
    runtime: Runtime, emergency_id: EmergencyId, body: StatusIn,
    principal: Principal = require_any(P.EMERGENCIES_DISPATCH, P.EMERGENCIES_UPDATE_ASSIGNED),
) -> EmergencyOut:
    """409 ``status-out-of-order`` for a step the lifecycle does not allow from the current
    status; 403 ``not-assigned`` for a paramedic cancelling."""
    return EmergencyOut.from_document(await service.change_status(
        runtime, principal, emergency_id, body.status, body.reason))


@router.put("/{emergency_id}/priority", summary="Re-prioritise (P1 … P4) with a reason")
async def reprioritise(runtime: Runtime, emergency_id: EmergencyId, body: PriorityIn,
                      principal: Principal = require(P.EMERGENCIES_DISPATCH)) -> EmergencyOut:
    """Dispatchers only. 409 ``cannot-reprioritise`` when closed, cancelled or already at
    that priority; 422 for an unknown priority or reason code."""
    return EmergencyOut.from_document(await service.reprioritise(
        runtime, principal, emergency_id, body.priority, body.reason))


@router.put("/{emergency_id}/position", summary="Set the incident's position (WGS84)")
async def locate(runtime: Runtime, emergency_id: EmergencyId, body: PositionIn,
                 principal: Principal = require(P.EMERGENCIES_DISPATCH)) -> EmergencyOut:
    """Dispatchers only: an emergency raised from an address gets a unit once it has a
    position (``emergency.located``). 409 ``cannot-locate`` once a crew is on scene or
    it ended; 422 for coordinates out of range."""
    return EmergencyOut.from_document(await service.locate(
        runtime, principal, emergency_id, body))


@router.put("/{emergency_id}/assignment", response_class=Response, openapi_extra=ASSIGN_BODY,
            summary="Assign or reassign the emergency to a unit by hand (dispatchers)")
async def assign(request: Request, paramedics: Paramedics, emergency_id: EmergencyId,
                 principal: Principal = require(P.EMERGENCIES_DISPATCH)) -> Response:
    """Done by the paramedic service (``PUT /api/v1/paramedics/assignments/{id}``, the
    same body and answers; :mod:`healthflow.emergency.assignment`): 200 its task JSON (the
    unit is offered the task, a unit that had it loses it); its problem+json unchanged
    (404 ``assignment-not-found``, ``unit-not-found``; 409 ``unit-not-assignable``,
    ``cannot-reassign``; 422); 503 when it cannot be reached, 504 when it is too slow."""
    return await paramedics.assign(principal.token, emergency_id, await request.body())


@router.post(
    "/{emergency_id}/photos", status_code=201, summary="Add a photo (the raiser; PNG, JPEG)",
    openapi_extra={"requestBody": {"required": True, "content": {
        t: {"schema": {"type": "string", "format": "binary"}}
        for t in sorted(photos.PHOTO.allowed_types)}}})
async def add_photo(runtime: Runtime, store_: Photos, request: Request, response: Response,
                    emergency_id: EmergencyId,
                    principal: Principal = require_any(*RAISERS)) -> PhotoOut:
    """The raw image is the body, its type the ``Content-Type``; streamed into storage
    and checked by content (:mod:`healthflow.emergency.photos`). 422 ``invalid-photo``
    (``problem``: ``not-accepted``, ``unreadable-image``, ``too-many-pixels``); 413 over
    ``photo_max_bytes``; 415 without a ``Content-Type``; 403 ``not-raiser``; 409
    ``cannot-add-photo`` (ended, or ``max_photos`` already); nothing is kept on any."""
    photo = await photos.add(runtime, store_, principal, emergency_id, request.stream(),
                             request.headers.get("content-type"))
    out = PhotoOut.from_document(emergency_id, photo)
    response.headers["Location"] = out.file
    return out


@router.get("/{emergency_id}/photos/{photo_id}", summary="A photo of the emergency, streamed",
            response_class=StreamingResponse,
            responses={200: {"content": {t: {} for t in sorted(photos.PHOTO.allowed_types)}}})
async def read_photo(runtime: Runtime, store_: Photos, emergency_id: EmergencyId,
                     photo_id: PhotoId, principal: Principal = require_any(*READERS)
                     ) -> StreamingResponse:
    """For whoever may read the emergency (its dispatchers, current crews, raiser; 404
    for anyone else), checked on every read; never cached (``no-store``) nor
    type-sniffed (``nosniff``)."""
    photo, chunks = await photos.read(runtime, store_, principal, emergency_id, photo_id)
    return StreamingResponse(chunks, media_type=photo["content_type"], headers={
        "Content-Length": str(photo["blob"]["size"]), "Cache-Control": "no-store",
        "Content-Disposition": f'inline; filename="{photo_id}"',
        "X-Content-Type-Options": "nosniff"})
