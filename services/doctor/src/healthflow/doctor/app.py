"""The doctor service's composition root."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time

from fastapi import FastAPI

from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.doctor import api, handlers, store
from healthflow.doctor.settings import Settings

log = logging.getLogger(__name__)


async def refresh_search_dates(runtime: ServiceRuntime, every: float) -> None:
    """Each ``every`` seconds, recompute the free-slot dates computed on an earlier UTC day
    (so the search horizon moves forward with the calendar)."""
    while True:
        try:
            today = datetime.combine(datetime.now(UTC).date(), time(0), tzinfo=UTC)
            await store.refresh_open_dates(runtime.transact, runtime.db, older_than=today)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("refreshing search dates failed; will try again")
        await asyncio.sleep(every)


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> FastAPI:
    """The doctor app: ``settings`` default to the environment, ``transport`` to the settings'."""
    settings = settings or load_settings(Settings)
    runtime = ServiceRuntime(settings, indexes=store.INDEXES, handlers=handlers.HANDLERS,
                             transport=transport)
    app = create_service_app(
        runtime, routers=[api.router], title="HealthFlow doctor service",
        description="Practitioners (FHIR Practitioner/PractitionerRole), licence verification, "
                    "search, and availability (FHIR Schedule/Slot).",
    )
    service_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_lifespan(app):
            task = asyncio.create_task(
                refresh_search_dates(runtime, settings.open_dates_refresh_seconds),
                name="doctor-search-dates")
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app.router.lifespan_context = lifespan
    return app
