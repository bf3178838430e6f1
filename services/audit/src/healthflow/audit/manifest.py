"""The audit service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import READS, RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="audit",
    port=8102,
    summary="The hash-chained log of every event; verification for compliance officers.",
    # compliance officers and admins only, checked at the edge and in the service;
    # a patient's own access report is for patients (permission checked in the service);
    # the checkpoint key and the signed checkpoints (sizes and root hashes, no entry) are
    # public so that anyone can check a checkpoint with nothing but the key; signing one
    # (POST on the prefix itself) stays with audit:read
    routes=(
        RouteDecl("/api/v1/audit", policy="audit"),
        RouteDecl("/api/v1/audit/patient-access"),
        RouteDecl("/api/v1/audit/checkpoints", policy="edge", public=READS,
                  methods={"POST": "audit"}),
    ),
)
