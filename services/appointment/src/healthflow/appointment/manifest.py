"""The appointment service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="appointment",
    port=8106,
    summary="Slots and bookings that can never be double-booked.",
    routes=(
        RouteDecl("/api/v1/appointments"),
        RouteDecl("/api/v1/slots"),
    ),
)
