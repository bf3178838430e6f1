"""The payment service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="payment",
    port=8113,
    summary="Payments for appointments (Stripe PaymentIntents, signed webhooks), "
            "charge items, invoices and billing summaries, coverages and insurance claims, "
            "a hospital's expenses, other incomes and monthly profit and loss.",
    routes=(
        RouteDecl("/api/v1/payments"),
        RouteDecl("/api/v1/invoices"),
        RouteDecl("/api/v1/charge-items"),
        RouteDecl("/api/v1/billing"),
        RouteDecl("/api/v1/coverages"),
        RouteDecl("/api/v1/claims"),
        # a receipt (a scan or a phone photo, a few MiB) is a raw body: the gateway's
        # ``document`` group (25 MiB), the service's PAYMENT_RECEIPT_MAX_BYTES at most that
        RouteDecl("/api/v1/expenses", paths={"/{id}/receipt": {"PUT": "document"}}),
        RouteDecl("/api/v1/incomes", paths={"/{id}/receipt": {"PUT": "document"}}),
        RouteDecl("/api/v1/finance"),
        # Stripe's signed callback: no token; the route verifies Stripe-Signature
        RouteDecl("/api/v1/payments/webhooks/stripe", public=frozenset({"POST"})),
    ),
)
