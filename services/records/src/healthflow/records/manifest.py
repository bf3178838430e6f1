"""The records service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="records",
    port=8108,
    summary="Clinical records: encounters, diagnoses, vital signs, medications, treatment "
            "plans, procedures, documents and images; FHIR export.",
    routes=(RouteDecl("/api/v1/encounters"), RouteDecl("/api/v1/records"),
            RouteDecl("/api/v1/care-plans"), RouteDecl("/api/v1/procedures"),
            RouteDecl("/api/v1/documents", methods={"POST": "upload"}),
            RouteDecl("/api/v1/fhir")),
    calls=("prescription",),  # the FHIR export reads MedicationRequests there
)
