"""The teleconference service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

RECORDINGS_DIR = "/var/lib/healthflow/janus-recordings"
"""Where Janus writes recordings and this service reads them, in both containers."""

MANIFEST = ServiceManifest(
    name="teleconference",
    port=8114,
    summary="Video consultations: a room per online appointment, a waiting room, WebRTC "
            "through Janus.",
    routes=(RouteDecl("/api/v1/teleconsultations"),
            # guests have no account: the service checks their X-Guest-Token itself
            RouteDecl("/api/v1/teleconsultations/guest",
                      public=frozenset({"GET", "POST", "PUT"})),
            # the browser client (static HTML and JavaScript; its API calls carry the token)
            RouteDecl("/app/teleconsultation", public=frozenset({"GET", "HEAD"}))),
    volumes={"janus-recordings": RECORDINGS_DIR},
)
