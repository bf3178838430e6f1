"""The xray service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="xray",
    port=8110,
    summary="X-ray orders (ServiceRequest), DICOM and photo uploads (ImagingStudy), previews.",
    routes=(RouteDecl("/api/v1/imaging/orders"),
            RouteDecl("/api/v1/imaging/studies", methods={"POST": "upload"}),
            RouteDecl("/api/v1/dicomweb/studies", methods={"POST": "upload"})),
    listeners={"dicom": 11112},  # the C-STORE storage SCP (XRAY_DICOM_PORT)
)
