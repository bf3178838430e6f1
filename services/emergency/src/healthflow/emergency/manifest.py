"""The emergency service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="emergency",
    port=8111,
    summary="Emergencies: raise, triage (P1–P4), lifecycle to hand-over.",
    # a photo (a few MiB) is a raw body: the gateway's ``document`` group streams it
    # a dispatcher's PUT /api/v1/emergencies/{id}/assignment is done by the paramedic
    # service's route (healthflow.emergency.assignment)
    calls=("paramedic",),
    routes=(RouteDecl("/api/v1/emergencies", paths={"/{id}/photos": {"POST": "document"}}),),
)
