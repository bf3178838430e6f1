"""The patient service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="patient",
    port=8105,
    summary="Patient charts: demographics, contacts, allergies, conditions, consents.",
    routes=(
        RouteDecl("/api/v1/patients"),
    ),
)
