"""The hospital service's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.hospital import api, handlers, store
from healthflow.hospital.settings import Settings


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> FastAPI:
    """The hospital app: ``settings`` default to the environment, ``transport`` to the settings'."""
    settings = settings or load_settings(Settings)
    runtime = ServiceRuntime(settings, indexes=store.INDEXES, handlers=handlers.HANDLERS,
                             transport=transport)
    return create_service_app(
        runtime, routers=[api.router], title="HealthFlow hospital service",
        description="Hospitals (FHIR Organization/Location), departments, staff, verification.",
    )
