"""The doctor service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import READS, RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="doctor",
    port=8104,
    summary="Practitioners, licence verification, search and availability.",
    # verified doctors are a public directory
    routes=(
        RouteDecl("/api/v1/doctors", public=READS),
    ),
)
