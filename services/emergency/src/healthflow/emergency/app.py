"""The emergency service's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from healthflow.common.blobs import BlobStore
from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.common.workers import Hooks, Loop
from healthflow.emergency import api, handlers, store
from healthflow.emergency.assignment import ParamedicClient
from healthflow.emergency.photos import PhotoStore
from healthflow.emergency.settings import Settings


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> FastAPI:
    """The emergency service app (settings from ``EMERGENCY_*`` when not given); the
    photos' blob store is closed with it (its bucket is made on first use) and swept of
    orphans every ``sweep_interval`` seconds; the paramedic service's client (manual
    assignment is forwarded there) is started and closed with it."""
    settings = settings or load_settings(Settings)
    runtime = ServiceRuntime(settings, indexes=store.INDEXES, handlers=handlers.HANDLERS,
                             transport=transport)
    photos = PhotoStore(BlobStore(settings), settings.inspect_concurrency)

    async def nothing() -> None:
        return None

    runtime.add_worker(Hooks("blobs", nothing, photos.blobs.close))
    paramedics = ParamedicClient(settings.paramedic_url, settings.paramedic_timeout)
    runtime.add_worker(Hooks("paramedics", paramedics.start, paramedics.close))
    runtime.add_worker(Loop("photo-sweeper",
                            lambda: photos.sweep(runtime.db, settings.sweep_older_than),
                            interval=settings.sweep_interval))
    app = create_service_app(runtime, routers=[api.router], title="HealthFlow emergencies",
                             body_limits={("POST", api.PHOTOS_PATH): settings.photo_max_bytes},
                             description="Emergencies: raise, triage, lifecycle, "
                                         "assignment state from the paramedic service.")
    app.state.photos = photos
    app.state.paramedics = paramedics
    return app
