"""The xray service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="xray",
    port=8109,
    summary="The xray service.",
    routes=(RouteDecl("/api/v1/xray"),),
)
