"""The patient service's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.patient import api, handlers, service, store
from healthflow.patient.settings import Settings


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> FastAPI:
    """The patient service app (settings from ``PATIENT_*`` when not given)."""
    settings = settings or load_settings(Settings)
    runtime = ServiceRuntime(settings, indexes=store.INDEXES,
                             handlers=handlers.make_handlers(settings), transport=transport,
                             on_start=service.adopt_legacy)
    return create_service_app(
        runtime, routers=[api.router], title="HealthFlow patients",
        description="Patient profiles (FHIR Patient), allergies, conditions, consents.",
    )
