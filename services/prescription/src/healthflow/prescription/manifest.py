"""The prescription service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="prescription",
    port=8109,
    summary="Prescriptions (FHIR MedicationRequest): safety checks, issue, dispensing, "
            "signed PDFs.",
    routes=(RouteDecl("/api/v1/prescriptions"),
            # anyone holding a printed prescription checks it here, without an account
            RouteDecl("/api/v1/prescriptions/verify", policy="edge",
                      public=frozenset({"GET", "HEAD"})),
            # the published key set those checks use
            RouteDecl("/api/v1/prescriptions/keys", policy="edge",
                      public=frozenset({"GET", "HEAD"}))),
)
