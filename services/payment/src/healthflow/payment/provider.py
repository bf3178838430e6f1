"""Stripe, through the official ``stripe`` library only (https://docs.stripe.com/api).

:class:`Stripe` holds one ``StripeClient`` on the HTTPX transport (async calls) pointed at
``Settings.stripe_api_base`` when set (localstripe in development and tests) or at
Stripe itself. Nothing here logs a client secret or card data. Stripe being
unreachable, rate limiting or failing (``APIConnectionError``, ``RateLimitError``,
``APIError``, once the library's own retries are spent) raises
:class:`~healthflow.common.problems.ServiceUnavailable` (503 problem+json with
``Retry-After``); a job that meets it is retried later.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import stripe

from healthflow.common.problems import BadRequest, ServiceUnavailable
from healthflow.payment.settings import Settings

STRIPE_RETRY_AFTER = 30
"""Seconds a caller is asked to wait after Stripe failed (``Retry-After``)."""


@contextmanager
def _stripe_call() -> Iterator[None]:
    """Stripe's transient failures as a 503 (error class only in the detail)."""
    try:
        yield
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
        raise ServiceUnavailable(
            f"the payment provider is unavailable ({type(exc).__name__}); try again later",
            retry_after=STRIPE_RETRY_AFTER) from exc


@dataclass(frozen=True)
class Intent:
    """What this service keeps of a Stripe PaymentIntent (``amount`` in minor units)."""

    id: str
    client_secret: str
    status: str
    amount: int
    currency: str  # ISO 4217, upper case


class Stripe:
    """The Stripe calls of this service."""

    def __init__(self, settings: Settings) -> None:
        self.client = stripe.StripeClient(
            settings.stripe_api_key.get_secret_value(),
            base_addresses={"api": settings.stripe_api_base or stripe.DEFAULT_API_BASE},
            http_client=stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds),
            max_network_retries=settings.stripe_max_retries)
        secret = settings.stripe_webhook_secret
        self.webhook_secret = secret.get_secret_value() if secret else None
        self.tolerance = settings.webhook_tolerance_seconds

    async def create_intent(self, *, amount: int, currency: str, idempotency_key: str,
                            metadata: dict[str, str]) -> Intent:
        """A PaymentIntent for ``amount`` minor units of ``currency`` (ISO 4217).

        ``idempotency_key`` makes a retried call return the first intent at Stripe
        (https://docs.stripe.com/api/idempotent_requests, kept 24 hours).
        """
        with _stripe_call():
            intent = await self.client.v1.payment_intents.create_async(
                params={"amount": amount, "currency": currency.lower(), "metadata": metadata},
                options={"idempotency_key": idempotency_key})
        return _intent(intent)

    async def retrieve_intent(self, intent_id: str) -> Intent:
        """The PaymentIntent as Stripe has it now."""
        with _stripe_call():
            return _intent(await self.client.v1.payment_intents.retrieve_async(intent_id))

    async def cancel_intent(self, intent_id: str) -> str:
        """Cancel a PaymentIntent; its status afterwards: ``canceled``, or the status that
        kept Stripe from cancelling it (``succeeded``, ``processing``). Repeatable: an
        intent already cancelled answers ``canceled``
        (https://docs.stripe.com/api/payment_intents/cancel)."""
        with _stripe_call():
            try:
                return str((await self.client.v1.payment_intents.cancel_async(intent_id)).status)
            except stripe.InvalidRequestError:
                intent = await self.client.v1.payment_intents.retrieve_async(intent_id)
                return str(intent.status)

    async def refund(self, intent_id: str, amount: int, idempotency_key: str) -> str:
        """Refund ``amount`` minor units of a succeeded PaymentIntent; the refund id
        (https://docs.stripe.com/api/refunds/create)."""
        with _stripe_call():
            refund = await self.client.v1.refunds.create_async(
                params={"payment_intent": intent_id, "amount": amount},
                options={"idempotency_key": idempotency_key})
        return str(refund.id)

    async def refunds_of(self, intent_id: str) -> list[tuple[str, int, str]]:
        """The refunds of a PaymentIntent as ``[(refund id, minor units, status)]``, newest
        first, whatever their status (``pending``, ``succeeded``, ``failed``,
        ``canceled``, ...; https://docs.stripe.com/api/refunds/list)."""
        with _stripe_call():
            page = await self.client.v1.refunds.list_async(
                params={"payment_intent": intent_id, "limit": 100})
        return [(str(r.id), int(r.amount), str(r.status)) for r in page.data]

    def verify(self, payload: bytes, signature: str | None) -> stripe.Event:
        """The event of a webhook delivery, verified by ``stripe.Webhook.construct_event``
        over the raw ``payload`` bytes with the endpoint secret (HMAC-SHA256 of
        ``"{t}.{payload}"``, timestamp within ``tolerance`` seconds;
        https://docs.stripe.com/webhooks#verify-events).

        Raises:
            BadRequest: (400) no or a wrong signature, a stale timestamp, or a body
                that is not a JSON event.
            ServiceUnavailable: (503) no webhook secret is configured.
        """
        if not self.webhook_secret:
            raise ServiceUnavailable("the Stripe webhook secret is not configured", retry_after=60)
        if not signature:
            raise BadRequest("the Stripe-Signature header is missing")
        try:
            return stripe.Webhook.construct_event(payload, signature, self.webhook_secret,
                                                  tolerance=self.tolerance)
        except stripe.SignatureVerificationError as exc:
            raise BadRequest(f"the Stripe signature does not verify: {exc.user_message or exc}"
                             ) from None
        except ValueError:
            raise BadRequest("the webhook body is not a JSON Stripe event") from None


def _intent(intent: Any) -> Intent:
    return Intent(id=intent.id, client_secret=intent.client_secret, status=intent.status,
                  amount=int(intent.amount), currency=str(intent.currency).upper())
