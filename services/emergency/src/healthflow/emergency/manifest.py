"""The emergency service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="emergency",
    port=8109,
    summary="The emergency service.",
    routes=(RouteDecl("/api/v1/emergency"),),
)
