"""The xray service's composition root: the runtime, the blob store (started and closed
with it) and its orphan sweeper, the processing worker (:mod:`.processing`), the DICOM
storage SCP, the routes."""

from __future__ import annotations

from fastapi import FastAPI

from healthflow.common.blobs import XRAY, BlobStore
from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.jobs import Job, JobWorker
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.common.workers import Hooks, Loop
from healthflow.xray import api, care, dicomweb_api, handlers, imaging, processing, store
from healthflow.xray.dicom_scp import StorageScp
from healthflow.xray.settings import Settings


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> FastAPI:
    """The xray service app (settings from ``XRAY_*`` when not given)."""
    settings = settings or load_settings(Settings)
    imaging.guard_pillow(settings.max_image_pixels)  # process-wide: Pillow's own guard
    runtime = ServiceRuntime(settings, indexes=store.INDEXES, handlers=handlers.HANDLERS,
                             transport=transport, on_start=care.adopt_legacy)
    blobs = BlobStore(settings)
    runtime.add_worker(Hooks("blobs", blobs.start, blobs.close))

    async def sweep() -> None:
        await blobs.sweep(lambda keys: store.referenced_keys(runtime.db, keys),
                          older_than=settings.sweep_older_than, prefix=f"{XRAY.name}/")
        await blobs.sweep(lambda keys: store.derived_keys(runtime.db, keys),
                          older_than=settings.sweep_older_than,
                          prefix=f"{processing.DERIVED.name}/")

    runtime.add_worker(Loop("blob-sweeper", sweep, interval=settings.sweep_interval))

    async def prepare(job: Job) -> processing.Processed | None:
        return await processing.prepare(runtime, blobs, job)

    runtime.add_worker(JobWorker(runtime, processing.QUEUE, processing.process, lease=120.0,
                                 concurrency=settings.processing_concurrency,
                                 interval=settings.processing_interval,
                                 prepare=prepare).loop())
    scp = StorageScp(runtime, blobs, settings)
    runtime.add_worker(scp)
    app = create_service_app(runtime, routers=[*api.routers, dicomweb_api.router],
                             title="HealthFlow xray",
                             body_limits={("POST", path): settings.upload_max_bytes
                                          for path in dicomweb_api.UPLOAD_PATHS},
                             description="X-ray orders (FHIR ServiceRequest), images "
                             "(DICOM Part 10, photographs of films) as FHIR ImagingStudy, "
                             "previews and downloads.")
    app.state.blobs = blobs
    app.state.dicom_scp = scp
    return app
