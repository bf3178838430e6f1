"""Events the payment service publishes: its contracts, from
:mod:`healthflow.contracts.payment`."""

from __future__ import annotations

from healthflow.contracts.payment import (
    ExpenseCorrected,
    ExpenseRecorded,
    ExpenseVoided,
    IncomeCorrected,
    IncomeRecorded,
    IncomeVoided,
    PaymentDisputed,
    PaymentExpired,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentSucceeded,
)

__all__ = ["ExpenseCorrected", "ExpenseRecorded", "ExpenseVoided", "IncomeCorrected",
           "IncomeRecorded", "IncomeVoided", "PaymentDisputed", "PaymentExpired",
           "PaymentRefundFailed", "PaymentRefunded", "PaymentSucceeded"]
