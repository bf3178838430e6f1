"""The payment rules alone (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from healthflow.common.problems import UnprocessableContent
from healthflow.payment.domain import (
    AmountMismatch,
    InvoiceConflict,
    InvoiceStatus,
    PaymentStatus,
    RefundPolicy,
    check_money,
    ensure_reported_money,
    intent_request,
    invoice_lines,
    invoice_number,
    invoice_totals,
    month_range,
    next_status,
    paid_at,
    payment_id_of,
    payment_state,
    record_invoice_payment,
    refund_due,
    refunded_status,
    split_tax,
)
from healthflow.payment.pnl import month_bounds

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
    for currency in ("EURO", "€", "E1R", "ZZZ", "XYZ"):  # three letters, not ISO 4217
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


# --------------------------------------------------------------------------- billing


@pytest.mark.parametrize(("gross", "bp", "net", "tax"), [
    (4000, 1900, 3361, 639),  # 4000 / 1.19 = 3361.34
    (119, 1900, 100, 19),  # exact
    (1, 1900, 1, 0),  # 0.84 rounds up to 1
    (5, 2500, 4, 1),  # 4.0 exactly
    (3, 5000, 2, 1),  # 2.0
    (7, 4000, 5, 2),  # 5.0
    (21, 4000, 15, 6),  # 15.0
    (0, 700, 0, 0),
    (6000, 0, 6000, 0),
])
def test_tax_is_extracted_from_the_gross_price_rounding_half_up(
        gross: int, bp: int, net: int, tax: int) -> None:
    assert split_tax(gross, bp) == (net, tax)


def test_half_a_minor_unit_of_net_rounds_up() -> None:
    # 3 at 100 % tax: net 1.5 → 2, tax 1
    assert split_tax(3, 10_000) == (2, 1)


def test_net_and_tax_always_add_up_to_the_gross() -> None:
    for bp in (0, 1, 250, 700, 1900, 2500, 10_000):
        for gross in range(0, 3000, 7):
            net, tax = split_tax(gross, bp)
            assert net + tax == gross and net >= 0 and tax >= 0
    with pytest.raises(ValueError):
        split_tax(-1, 700)


def test_invoice_lines_need_items_of_one_currency() -> None:
    item = {"_id": "a", "code": "x", "description": "X", "quantity": 3, "unit_price": 1299,
            "currency": "EUR"}
    [line] = invoice_lines([item], 700)
    assert (line["sequence"], line["gross"], line["net"] + line["tax"]) == (1, 3897, 3897)
    assert invoice_totals([line])["total_gross"] == 3897
    with pytest.raises(UnprocessableContent):
        invoice_lines([], 700)
    with pytest.raises(UnprocessableContent):
        invoice_lines([item, {**item, "_id": "b", "currency": "USD"}], 700)


def test_an_invoice_is_balanced_when_paid_in_full_and_never_overpaid() -> None:
    assert record_invoice_payment(InvoiceStatus.ISSUED, 3000, 0, 1000) == (
        1000, InvoiceStatus.ISSUED)
    assert record_invoice_payment(InvoiceStatus.ISSUED, 3000, 1000, 2000) == (
        3000, InvoiceStatus.BALANCED)
    for bad in (0, -5, 2001):
        with pytest.raises(UnprocessableContent):
            record_invoice_payment(InvoiceStatus.ISSUED, 3000, 1000, bad)
    for final in (InvoiceStatus.BALANCED, InvoiceStatus.CANCELLED):
        with pytest.raises(InvoiceConflict):
            record_invoice_payment(final, 3000, 0, 1)
    assert payment_state(InvoiceStatus.ISSUED, 3000, 1) == "partially_paid"
    assert payment_state(InvoiceStatus.CANCELLED, 3000, 0) == "void"
    assert invoice_number(42) == "INV-000042"


# --------------------------------------------------------------------------- clinic finances


def test_a_month_is_a_range_of_calendar_dates() -> None:
    assert month_range("2026-11") == ("2026-11-01", "2026-12-01")
    assert month_range("2026-12") == ("2026-12-01", "2027-01-01")
    for bad in ("2026-13", "2026-1", "26-01", "2026-00", "2026-01-01"):
        with pytest.raises(ValueError):
            month_range(bad)


def test_a_hospitals_month_starts_at_its_own_midnight() -> None:
    first, after, start, end = month_bounds("2026-03", "Europe/Berlin")
    assert (first, after) == ("2026-03-01", "2026-04-01")
    # CET (UTC+1) at the start, CEST (UTC+2) at the end of March 2026
    assert (start, end) == (datetime(2026, 2, 28, 23, tzinfo=UTC),
                            datetime(2026, 3, 31, 22, tzinfo=UTC))
    assert month_bounds("2026-03", "UTC")[2] == datetime(2026, 3, 1, tzinfo=UTC)


def test_a_refund_counts_only_what_stripe_returned_or_is_returning() -> None:
    assert refund_due(4000, []) == (4000, 0)
    assert refund_due(4000, [("re_1", 1000, "succeeded")]) == (3000, 1000)  # goodwill
    assert refund_due(4000, [("re_2", 500, "pending"), ("re_1", 1000, "succeeded")]) \
        == (2500, 1500)
    assert refund_due(4000, [("re_1", 4000, "failed"), ("re_0", 4000, "canceled")]) \
        == (4000, 0)  # nothing went back: all of it is still owed
    assert refund_due(1000, [("re_1", 4000, "succeeded")]) == (0, 4000)  # never less
