"""The notification service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import READS, RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="notification",
    port=8107,
    summary="Email, SMS, Web Push, the in-app feed, reminders and the delivery log.",
    # Twilio signs its delivery callbacks (checked by the service); browsers need the
    # VAPID public key before anyone has logged in
    routes=(
        RouteDecl("/api/v1/notifications"),
        RouteDecl("/api/v1/notifications/twilio/status", public=frozenset({"POST"})),
        RouteDecl("/api/v1/notifications/push/vapid-public-key", public=READS),
        # the app's /verify-email page POSTs the mailed token (before or without a login)
        RouteDecl("/api/v1/notifications/email/verify", policy="register",
                  public=frozenset({"POST"})),
        # texting a code costs money and guessing one must be slow: a tight per-user budget
        RouteDecl("/api/v1/notifications/phone", policy="verification"),
    ),
    sidecars=("healthflow.devkit.mailbox",),
)
