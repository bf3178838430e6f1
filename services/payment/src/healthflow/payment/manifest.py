"""The payment service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="payment",
    port=8113,
    summary="Payments for appointments (Stripe PaymentIntents, signed webhooks), "
            "charge items, invoices and billing summaries.",
    routes=(
        RouteDecl("/api/v1/payments"),
        RouteDecl("/api/v1/invoices"),
        RouteDecl("/api/v1/charge-items"),
        RouteDecl("/api/v1/billing"),
        # Stripe's signed callback: no token; the route verifies Stripe-Signature
        RouteDecl("/api/v1/payments/webhooks/stripe", public=frozenset({"POST"})),
    ),
)
