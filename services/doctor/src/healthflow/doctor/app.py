"""The doctor service's composition root."""

from __future__ import annotations

from datetime import UTC, datetime, time

from fastapi import FastAPI

from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.common.workers import Loop
from healthflow.doctor import api, handlers, schedules, store
from healthflow.doctor.settings import Settings


async def refresh_search_dates(runtime: ServiceRuntime) -> bool:
    """Recompute the free-slot dates computed on an earlier UTC day, so that the search
    horizon moves forward with the calendar (a step of the ``doctor-search-dates`` loop,
    every ``open_dates_refresh_seconds``)."""
    today = datetime.combine(datetime.now(UTC).date(), time(0), tzinfo=UTC)
    await schedules.refresh_open_dates(runtime.transact, runtime.db, older_than=today)
    return False


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> FastAPI:
    """The doctor app: ``settings`` default to the environment, ``transport`` to the settings'."""
    settings = settings or load_settings(Settings)
    runtime = ServiceRuntime(settings, indexes=store.INDEXES, handlers=handlers.HANDLERS,
                             transport=transport)
    runtime.add_worker(Loop("doctor-search-dates", lambda: refresh_search_dates(runtime),
                            interval=settings.open_dates_refresh_seconds))
    return create_service_app(
        runtime, routers=[api.router], title="HealthFlow doctor service",
        description="Practitioners (FHIR Practitioner/PractitionerRole), licence verification, "
                    "search, and availability (FHIR Schedule/Slot).",
    )
