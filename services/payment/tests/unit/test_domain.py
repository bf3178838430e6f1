"""The payment rules alone (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from healthflow.payment.domain import (
    AmountMismatch,
    PaymentStatus,
    RefundPolicy,
    check_money,
    ensure_reported_money,
    intent_request,
    next_status,
    paid_at,
    payment_id_of,
    refunded_status,
)

S = PaymentStatus


def test_stripe_reports_move_a_payment_forward_only() -> None:
    assert next_status(S.REQUIRES_PAYMENT, S.SUCCEEDED) is S.SUCCEEDED
    assert next_status(S.REQUIRES_PAYMENT, S.DECLINED) is S.DECLINED
    assert next_status(S.DECLINED, S.SUCCEEDED) is S.SUCCEEDED  # another card worked
    assert next_status(S.DECLINED, S.DECLINED) is None  # a repeat
    # out of order: the failure of an earlier attempt arrives after the success
    assert next_status(S.SUCCEEDED, S.DECLINED) is None
    assert next_status(S.SUCCEEDED, S.SUCCEEDED) is None
    # an expired hold's intent was cancelled at Stripe first: nothing moves it again
    assert next_status(S.EXPIRED, S.SUCCEEDED) is None
    assert next_status(S.EXPIRED, S.DECLINED) is None


def test_money_is_a_positive_integer_of_minor_units_and_an_iso_4217_code() -> None:
    assert check_money(4000, "eur") == (4000, "EUR")
    for amount in (0, -1, 40.0, True):
        with pytest.raises(ValueError, match="minor units"):
            check_money(amount, "EUR")  # type: ignore[arg-type]
    for currency in ("EURO", "€", "E1R"):
        with pytest.raises(ValueError, match="ISO 4217"):
            check_money(100, currency)


def test_stripe_must_report_the_payments_own_amount_and_currency() -> None:
    ensure_reported_money(4000, "EUR", 4000, "eur")
    with pytest.raises(AmountMismatch) as info:
        ensure_reported_money(4000, "EUR", 400, "eur")
    assert info.value.status == 422 and "400 EUR" in str(info.value)
    with pytest.raises(AmountMismatch):
        ensure_reported_money(4000, "EUR", 4000, "usd")


START = datetime(2027, 3, 1, 14, tzinfo=UTC)


@pytest.mark.parametrize(("role", "ahead", "expected"), [
    ("patient", timedelta(hours=24), (4000, "inside_window")),  # exactly on the window
    ("patient", timedelta(days=3), (4000, "inside_window")),
    ("patient", timedelta(hours=23, minutes=59), (1320, "late_cancellation")),  # 33 %: 1320
    ("patient", timedelta(minutes=-5), (1320, "late_cancellation")),  # after the start
    ("doctor", timedelta(minutes=5), (4000, "cancelled_by_provider")),
    ("staff", timedelta(0), (4000, "cancelled_by_provider")),
])
def test_refunds_follow_the_cancellation_policy(role: str, ahead: timedelta,
                                                expected: tuple[int, str]) -> None:
    policy = RefundPolicy(full_window=timedelta(hours=24), late_percent=33)
    assert policy.refund(4000, cancelled_by_role=role, cancelled_at=START - ahead,
                         start=START) == expected


def test_no_late_refund_and_the_resulting_status() -> None:
    none = RefundPolicy(full_window=timedelta(hours=24), late_percent=0)
    assert none.refund(4000, cancelled_by_role="patient", cancelled_at=START,
                       start=START) == (0, "late_cancellation")
    assert refunded_status(4000, 0) is None
    assert refunded_status(4000, 1320) is S.PARTIALLY_REFUNDED
    assert refunded_status(4000, 4000) is S.REFUNDED


def test_a_retried_checkout_sends_stripe_the_same_parameters_under_its_key() -> None:
    # Stripe refuses a reused idempotency key with other parameters (idempotency_error)
    first = intent_request("appt-1", 4000, "EUR")
    assert intent_request("appt-1", 4000, "EUR") == first
    assert first["idempotency_key"] == "appointment-appt-1"
    assert first["metadata"] == {"appointment_id": "appt-1",
                                 "payment_id": payment_id_of("appt-1")}
    assert payment_id_of("appt-1") == payment_id_of("appt-1") != payment_id_of("appt-2")
    assert uuid.UUID(payment_id_of("appt-1")).version == 5


def test_a_cancellation_before_the_success_was_recorded_refunds_everything() -> None:
    policy = RefundPolicy(full_window=timedelta(hours=24), late_percent=0)
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    paid = start - timedelta(minutes=30)
    history = [{"status": "requires_payment", "at": paid - timedelta(minutes=5)},
               {"status": "succeeded", "at": paid}]
    assert paid_at(history) == paid and paid_at(history[:1]) is None
    before = policy.refund(4000, cancelled_by_role="patient",
                           cancelled_at=paid - timedelta(minutes=1), start=start, paid_at=paid)
    after = policy.refund(4000, cancelled_by_role="patient",
                          cancelled_at=paid + timedelta(minutes=1), start=start, paid_at=paid)
    assert before == (4000, "cancelled_before_recorded")
    assert after == (0, "late_cancellation")
