"""The teleconference service's composition root: the runtime, the Janus adapter, the
blob store, the keep-alive and room-closing loops, the recording worker and retention
loop, and the routes."""

from __future__ import annotations

from fastapi import FastAPI

from healthflow.common.blobs import BlobStore
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.jobs import Job, JobWorker
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.common.workers import Hooks, Loop
from healthflow.teleconference import api, handlers, recording, service, store
from healthflow.teleconference.janus import Janus
from healthflow.teleconference.settings import Settings


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> FastAPI:
    """The teleconference service app (settings from ``TELECONFERENCE_*`` when not given)."""
    settings = settings or load_settings(Settings)
    runtime = ServiceRuntime(settings, indexes=store.INDEXES, handlers=handlers.HANDLERS,
                             transport=transport)
    janus = Janus(settings)
    runtime.state["janus"] = janus
    blobs = BlobStore(settings)
    runtime.state["blobs"] = blobs
    runtime.add_worker(Hooks("blobs", blobs.start, blobs.close))
    runtime.add_worker(Hooks("janus", _nothing, janus.aclose))

    async def process(uow: UnitOfWork, job: Job) -> None:
        await recording.process(uow, blobs, janus, settings, job)

    runtime.add_worker(JobWorker(runtime, recording.QUEUE, process, lease=300.0,
                                 concurrency=1).loop())

    async def expire() -> None:
        await recording.expire(runtime, blobs)

    runtime.add_worker(Loop("recording-retention", expire, interval=settings.sweep_seconds))

    async def keep_alive() -> None:
        await service.keep_alive(runtime, janus)

    async def close_rooms() -> None:
        await service.close_expired(runtime, janus)

    runtime.add_worker(Loop("janus-keepalive", keep_alive, interval=settings.keepalive_seconds))
    runtime.add_worker(Loop("teleconsult-close", close_rooms, interval=settings.sweep_seconds))
    return create_service_app(runtime, routers=[api.guest_router, api.router,
                                                       api.client_router],
                              title="HealthFlow teleconference",
                              description="Video consultations for online appointments.")


async def _nothing() -> None:
    """Janus's client needs no start."""
