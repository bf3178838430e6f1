"""The appointment service's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from healthflow.appointment import api, handlers, store
from healthflow.appointment.settings import Settings
from healthflow.common import migrations
from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings


async def _adopt(runtime: ServiceRuntime) -> None:
    """Older appointments get the hospitals they belong to (:func:`store.adopt_hospitals`),
    once per database (:func:`healthflow.common.migrations.apply_once`)."""
    await migrations.apply_once(runtime.db, "appointments.hospital_ids",
                                lambda: store.adopt_hospitals(runtime.db))


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> FastAPI:
    """The appointment service app (settings from ``APPOINTMENT_*`` when not given)."""
    settings = settings or load_settings(Settings)
    runtime = ServiceRuntime(settings, indexes=store.INDEXES, handlers=handlers.HANDLERS,
                             transport=transport, on_start=_adopt)
    return create_service_app(
        runtime, routers=[api.slots_router, api.router], title="HealthFlow appointments",
        description="Free slots, bookings and their lifecycle; no double booking.",
    )
