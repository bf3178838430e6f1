"""The audit service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="audit",
    port=8102,
    summary="The hash-chained log of every event; verification for compliance officers.",
    # compliance officers and admins only, checked at the edge and in the service;
    # a patient's own access report is for patients (permission checked in the service)
    routes=(
        RouteDecl("/api/v1/audit", policy="audit"),
        RouteDecl("/api/v1/audit/patient-access"),
    ),
)
