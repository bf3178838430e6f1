"""The prescription service's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.prescription import api, handlers, printed, store
from healthflow.prescription.settings import Settings


async def _on_start(runtime: ServiceRuntime) -> None:
    await printed.signing_key(runtime)  # a kept key is wrapped (or re-wrapped) at start


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> FastAPI:
    """The prescription service app (settings from ``PRESCRIPTION_*`` when not given)."""
    settings = settings or load_settings(Settings)
    runtime = ServiceRuntime(settings, indexes=store.INDEXES,
                             handlers=handlers.make_handlers(settings), transport=transport,
                             on_start=_on_start)
    return create_service_app(runtime, routers=api.routers, title="HealthFlow prescription",
                              description="Prescriptions (FHIR R4 MedicationRequest) in "
                              "encounters: allergy and duplicate checks, overrides, "
                              "dispensing by pharmacists.")
