"""The records service's composition root: the runtime, the blob store (started and
closed with it) and its orphan sweeper, the slots of upload checks, the prescription
service's HTTP client (started and closed with it), the routes."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from healthflow.common.blobs import BlobStore
from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.common.workers import Hooks, Loop
from healthflow.records import api, care, handlers, store
from healthflow.records.prescriptions import PrescriptionClient
from healthflow.records.settings import Settings


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> FastAPI:
    """The records service app (settings from ``RECORDS_*`` when not given)."""
    settings = settings or load_settings(Settings)
    runtime = ServiceRuntime(settings, indexes=store.INDEXES, handlers=handlers.HANDLERS,
                             transport=transport, on_start=care.adopt_legacy)
    blobs = BlobStore(settings)
    runtime.add_worker(Hooks("blobs", blobs.start, blobs.close))
    prescriptions = PrescriptionClient(settings.prescription_url, settings.prescription_timeout)
    runtime.add_worker(Hooks("prescriptions", prescriptions.start, prescriptions.close))

    async def sweep() -> None:
        await blobs.sweep(lambda keys: store.referenced_keys(runtime.db, keys),
                          older_than=settings.sweep_older_than)

    runtime.add_worker(Loop("blob-sweeper", sweep, interval=settings.sweep_interval))
    app = create_service_app(runtime, routers=api.routers, title="HealthFlow records",
                             body_limits={("POST", api.UPLOAD_PATH): settings.upload_max_bytes},
                             description="Encounters (FHIR Encounter) and their record entries "
                             "(Condition, Observation, MedicationStatement, CarePlan, "
                             "Procedure), versioned; clinical documents and patient images "
                             "(DocumentReference); FHIR R4 export.")
    app.state.blobs = blobs
    app.state.inspections = asyncio.Semaphore(settings.inspect_concurrency)
    app.state.prescriptions = prescriptions
    return app
