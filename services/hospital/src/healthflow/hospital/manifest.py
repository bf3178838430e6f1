"""The hospital service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import READS, RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="hospital",
    port=8103,
    summary="Hospitals, departments, staff memberships and their verification.",
    # verified hospitals are a public directory
    routes=(
        RouteDecl("/api/v1/hospitals", public=READS),
    ),
)
