"""HTTP routes under ``/api/v1/paramedics`` (thin; rules live in the service).

The paramedic app: ``/me`` (unit profile), ``/me/status``, ``/me/position``,
``/me/tasks`` with ack (the app got the pushed offer), accept and decline (emergency
and X-ray tasks). Dispatchers:
``GET /`` (every unit with status and position), ``GET /xray-queue`` (X-ray orders not
finished), ``PUT /assignments/{emergency_id}`` (manual (re)assignment).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from healthflow.common.auth import Principal, require, while_authorized
from healthflow.common.http import get_runtime
from healthflow.common.permissions import Permission as P
from healthflow.common.service import ServiceRuntime
from healthflow.paramedic import acks, dispatch, service, store
from healthflow.paramedic.assigner import Assigner
from healthflow.paramedic.domain import assignment_of
from healthflow.paramedic.schemas import (
    AssignIn,
    DeclineIn,
    PositionIn,
    ProfileIn,
    StatusIn,
    TaskOut,
    UnitOut,
    XrayQueueItem,
)

Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]


def get_context(runtime: Runtime) -> service.Context:
    context: service.Context = runtime.state["context"]
    return context


Ctx = Annotated[service.Context, Depends(get_context)]


def get_assigner(runtime: Runtime) -> Assigner:
    assigner: Assigner = runtime.state["assigner"]
    return assigner


AssignerDep = Annotated[Assigner, Depends(get_assigner)]
TaskId = Annotated[str, Path(max_length=64)]
EmergencyId = Annotated[str, Path(max_length=64)]
Own = require(P.PARAMEDICS_MANAGE_OWN)

router = APIRouter(prefix="/api/v1/paramedics", tags=["paramedics"])


def _unit(ctx: service.Context, doc: dict[str, object]) -> UnitOut:
    return UnitOut.from_document(doc, assignable=service.is_assignable(ctx, doc),
                                 on_shift=service.is_on_shift(ctx, doc))


@router.get("", summary="Every unit with duty status and position (dispatchers)")
async def list_units(runtime: Runtime, ctx: Ctx,
                     principal: Principal = require(P.PARAMEDICS_READ_ANY)) -> list[UnitOut]:
    return [_unit(ctx, d)
            for d in await store.list_units(runtime.db)]


@router.get("/xray-queue", summary="X-ray orders waiting for or given to a unit (dispatchers)")
async def xray_queue(runtime: Runtime,
                     principal: Principal = require(P.EMERGENCIES_DISPATCH)
                     ) -> list[XrayQueueItem]:
    """Oldest first; ``escalated`` ones wait for a radiography-qualified unit."""
    return [XrayQueueItem.from_document(d) for d in await store.xray_queue(runtime.db)]


@router.put("/assignments/{emergency_id}",
            summary="Assign or reassign an emergency to a unit by hand (dispatchers)")
async def assign(runtime: Runtime, ctx: Ctx, emergency_id: EmergencyId, body: AssignIn,
                 principal: Principal = require(P.EMERGENCIES_DISPATCH)) -> TaskOut:
    """The unit is offered the task (it still accepts; its timer runs as for any offer);
    a unit that had it loses it. 404 ``assignment-not-found``, ``unit-not-found``; 409
    ``unit-not-assignable`` (not available with a fresh position), ``cannot-reassign``
    (ended, or the crew on scene or later)."""
    return TaskOut.from_document(await dispatch.assign(runtime, ctx, principal,
                                                       emergency_id, body))


@router.get("/me", summary="The caller's unit")
async def get_me(runtime: Runtime, ctx: Ctx, principal: Principal = Own) -> UnitOut:
    """404 ``unit-not-found`` before the profile is put."""
    doc = await service.own_unit(runtime, principal)
    return _unit(ctx, doc)


@router.put("/me", summary="Create or replace the caller's unit profile")
async def put_me(runtime: Runtime, ctx: Ctx, body: ProfileIn,
                 principal: Principal = Own) -> UnitOut:
    doc = await service.put_profile(runtime, principal, body)
    return _unit(ctx, doc)


@router.put("/me/status", summary="Go off duty or available")
async def put_status(runtime: Runtime, ctx: Ctx, assigner: AssignerDep, body: StatusIn,
                     principal: Principal = Own) -> UnitOut:
    """409 ``unit-busy`` while the unit works a task."""
    doc = await service.set_status(runtime, ctx, principal, body.status)
    assigner.wakeup.set()  # escalated emergencies it could serve may be pending now
    return _unit(ctx, doc)


@router.put("/me/position", summary="Report the unit's position (WGS84)")
async def put_position(runtime: Runtime, ctx: Ctx, body: PositionIn,
                       principal: Principal = Own) -> UnitOut:
    """422 for coordinates out of range or a time too old or in the future."""
    doc = await service.report_position(runtime, ctx, principal, body)
    return _unit(ctx, doc)


@router.get("/me/tasks", summary="Tasks offered to the caller's unit, newest first")
async def list_tasks(runtime: Runtime, principal: Principal = Own) -> list[TaskOut]:
    return [TaskOut.from_document(d) for d in await store.tasks_of(runtime.db,
                                                                     principal.subject)]


@router.get("/me/tasks/stream", summary="The caller's tasks as Server-Sent Events",
            response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream_tasks(request: Request, runtime: Runtime, ctx: Ctx,
                       principal: Principal = Own) -> EventSourceResponse:
    """``text/event-stream`` (WHATWG HTML §9.2): first the open tasks (offered or
    accepted), then one ``task`` event (``data`` = the TaskOut JSON, ``id`` = task id)
    per new offer or change, from a change stream on the tasks (no polling), opened
    before the catch-up read so nothing falls between the two; ``: ping`` every
    ``stream_heartbeat_s`` seconds. While it is open the unit counts as connected
    (seen every heartbeat); an offer to a unit not seen for two heartbeats goes out
    by SMS too (the notification service). The token is re-checked every heartbeat and
    on every revocation heard of: an expired or revoked one ends the stream with an
    ``unauthorized`` event."""
    paramedic_id = principal.subject

    async def seen() -> None:  # while open: offers go here, not by SMS
        while True:
            await store.touch_stream(runtime.db, paramedic_id, ctx.clock())
            await asyncio.sleep(ctx.settings.stream_heartbeat_s)

    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(retry=3000, comment="stream open")
        alive = asyncio.create_task(seen(), name=f"stream-seen:{paramedic_id}")
        try:
            async with await store.watch_tasks(runtime.db, paramedic_id) as changes:
                for doc in await store.open_tasks_of(runtime.db, paramedic_id):
                    yield _task_event(doc)
                async for change in changes:
                    yield _task_event(change["fullDocument"])
        finally:
            alive.cancel()

    guarded = while_authorized(request, principal, events(),
                               heartbeat=ctx.settings.stream_heartbeat_s)
    return EventSourceResponse(guarded, ping=ctx.settings.stream_heartbeat_s, sep="\n",
                               headers={"Cache-Control": "no-cache",
                                        "X-Accel-Buffering": "no"})


def _task_event(doc: dict[str, object]) -> ServerSentEvent:
    return ServerSentEvent(id=str(doc["_id"]), event="task",
                           data=TaskOut.from_document(doc).model_dump_json())


@router.post("/me/tasks/{task_id}/ack", summary="Acknowledge an offer the app received")
async def acknowledge(runtime: Runtime, ctx: Ctx, task_id: TaskId,
                      principal: Principal = Own) -> TaskOut:
    """The app shows the offer pushed on its task stream: no SMS follows (else one does
    after ``ack_timeout_s``). Idempotent. 404 ``task-not-found`` for another unit's
    task; 409 ``task-not-offered`` once it is answered, expired or withdrawn."""
    return TaskOut.from_document(await acks.acknowledge(runtime, principal, task_id,
                                                        ctx.clock()))


@router.post("/me/tasks/{task_id}/accept", summary="Accept an offered task")
async def accept(runtime: Runtime, ctx: Ctx, task_id: TaskId,
                 principal: Principal = Own) -> TaskOut:
    """404 ``task-not-found`` for another unit's task; 409 ``task-not-offered``."""
    return TaskOut.from_document(await service.accept(runtime, ctx, principal, task_id))


@router.post("/me/tasks/{task_id}/decline", summary="Decline an offered task")
async def decline(runtime: Runtime, ctx: Ctx, assigner: AssignerDep, task_id: TaskId,
                  body: DeclineIn | None = None, principal: Principal = Own) -> TaskOut:
    """The next unit is offered the emergency at once (after the decline commits)."""
    task = await service.decline(runtime, ctx, principal, task_id,
                                 body.reason if body else None)
    await assigner.after_commit(assignment_of(task))
    return TaskOut.from_document(task)
