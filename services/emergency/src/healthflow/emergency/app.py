"""The emergency service's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.emergency import api, handlers, store
from healthflow.emergency.settings import Settings


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> FastAPI:
    """The emergency service app (settings from ``EMERGENCY_*`` when not given)."""
    settings = settings or load_settings(Settings)
    runtime = ServiceRuntime(settings, indexes=store.INDEXES, handlers=handlers.HANDLERS,
                             transport=transport)
    return create_service_app(runtime, routers=[api.router], title="HealthFlow emergencies",
                              description="Emergencies: raise, triage, lifecycle, "
                                          "assignment state from the paramedic service.")
