"""The paramedic service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="paramedic",
    port=8110,
    summary="The paramedic service.",
    routes=(RouteDecl("/api/v1/paramedic"),),
)
