"""The paramedic service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="paramedic",
    port=8112,
    summary="Paramedic units: profiles, duty status, positions, tasks, assignment.",
    routes=(RouteDecl("/api/v1/paramedics"),),
)
