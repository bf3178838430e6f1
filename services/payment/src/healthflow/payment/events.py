"""Events the payment service publishes: its contracts, from
:mod:`healthflow.contracts.payment`."""

from __future__ import annotations

from healthflow.contracts.payment import PaymentExpired, PaymentRefunded, PaymentSucceeded

__all__ = ["PaymentExpired", "PaymentRefunded", "PaymentSucceeded"]
