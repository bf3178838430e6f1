"""The payment service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="payment",
    port=8113,
    summary="Payments for appointments: Stripe PaymentIntents, signed webhooks.",
    routes=(
        RouteDecl("/api/v1/payments"),
        # Stripe's signed callback: no token; the route verifies Stripe-Signature
        RouteDecl("/api/v1/payments/webhooks/stripe", public=frozenset({"POST"})),
    ),
)
