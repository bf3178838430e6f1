"""Payment rules: the status of an appointment's payment and how Stripe's reports move it
(no I/O).

One payment per appointment, backed by one Stripe PaymentIntent. Statuses:

=================  =========================================================
status             meaning
=================  =========================================================
requires_payment   the PaymentIntent exists; the patient has not paid yet
declined           the last card was declined; the slot stays held, the
                   patient may try another card
succeeded          Stripe reported ``payment_intent.succeeded``
expired            the hold ended unpaid; the intent was cancelled at Stripe
                   first, so no card can succeed on it afterwards
cancelled          the appointment was cancelled before it was paid (the intent
                   cancelled at Stripe likewise)
refunded           all of it went back (:class:`RefundPolicy`)
partially_refunded part of it went back
disputed           the card issuer disputed the charge (a chargeback): open, or
                   lost; a dispute won restores the status it had before
=================  =========================================================

A refund Stripe reports ``failed`` later is taken off again (the status it gave
is undone) and the payment flagged for finance to review.

Stripe delivers webhooks at least once and in no guaranteed order
(https://docs.stripe.com/webhooks#event-ordering), so :func:`next_status` is a
monotone rule: ``succeeded`` is never left by a later failure report, and a
report that changes nothing returns ``None``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypedDict

import pycountry

from healthflow.common.problems import Conflict, UnprocessableContent


class PaymentStatus(StrEnum):
    REQUIRES_PAYMENT = "requires_payment"
    DECLINED = "declined"
    SUCCEEDED = "succeeded"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"
    DISPUTED = "disputed"


FINAL = frozenset(PaymentStatus) - {PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.DECLINED}
"""Statuses no Stripe report about the intent moves any more."""
EXPIRABLE = frozenset({PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.DECLINED})
"""Statuses whose hold ends at its deadline."""
COLLECTED = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED,
                       PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.DISPUTED})
"""Statuses of a payment whose money Stripe took (some may have gone back since, or be
held in a dispute)."""

INTENT_EVENTS: dict[str, PaymentStatus] = {
    "payment_intent.succeeded": PaymentStatus.SUCCEEDED,
    "payment_intent.payment_failed": PaymentStatus.DECLINED,
}
"""The Stripe event types this service acts on, and the status each reports."""

DISPUTE_EVENTS = frozenset({"charge.dispute.created", "charge.dispute.closed"})
"""Stripe's dispute (chargeback) events this service records (object: a Dispute)."""
REFUND_EVENTS = frozenset({"charge.refund.updated", "refund.updated", "refund.failed"})
"""Stripe's refund events this service reads (object: a Refund); only a ``failed`` one
changes anything."""
DISPUTE_RESOLVED = frozenset({"won", "warning_closed"})
"""Closed dispute statuses that leave the money with the hospital."""

def is_currency(code: str) -> bool:
    """Whether ``code`` is an ISO 4217 alphabetic currency code, upper case (``pycountry``'s
    table: ``ZZZ`` is three letters and no currency)."""
    return (len(code) == 3 and code.isascii() and code.isupper()
            and pycountry.currencies.get(alpha_3=code) is not None)


class HoldNotReleasable(RuntimeError):
    """Stripe is still processing the intent: the expiry (or refund) job runs again later."""


class AmountMismatch(UnprocessableContent):
    """422: Stripe reports another amount or currency than the payment asked for."""

    title, slug = "Amount Mismatch", "payment-amount-mismatch"


def next_status(current: PaymentStatus, reported: PaymentStatus) -> PaymentStatus | None:
    """The status after Stripe reports ``reported``, or ``None`` when nothing changes
    (a repeat, or a failure reported after the success it preceded)."""
    if current in FINAL or current is reported:
        return None
    return reported


def check_money(amount: int, currency: str) -> tuple[int, str]:
    """``(amount, currency)`` of a charge: an integer above zero in minor units and an
    ISO 4217 alphabetic code (returned upper case; Stripe takes it lower case).

    Raises:
        ValueError: a non-integer or non-positive amount, or a malformed currency.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError(f"the amount must be a positive integer of minor units, not {amount!r}")
    code = currency.upper()
    if not is_currency(code):
        raise ValueError(f"{currency!r} is not an ISO 4217 currency code")
    return amount, code


def ensure_reported_money(amount: int, currency: str, reported_amount: int,
                          reported_currency: str) -> None:
    """Stripe's PaymentIntent must carry exactly the payment's amount and currency.

    Raises:
        AmountMismatch: (422) it does not (a tampered or foreign intent).
    """
    if reported_amount != amount or reported_currency.upper() != currency:
        raise AmountMismatch(
            f"Stripe reports {reported_amount} {reported_currency.upper()}, "
            f"the payment is {amount} {currency}")


PAYMENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://healthflow/payment")
"""The UUID namespace of payment ids (RFC 9562 section 5.5, version 5)."""


class IntentRequest(TypedDict):
    """The keyword arguments of ``Stripe.create_intent``."""

    amount: int
    currency: str
    idempotency_key: str
    metadata: dict[str, str]


def payment_id_of(appointment_id: str) -> str:
    """The payment id of an appointment's payment: a UUID version 5 (RFC 9562 §5.5) of
    the appointment id, so that a retried checkout sends Stripe the same parameters under
    the same idempotency key (https://docs.stripe.com/api/idempotent_requests: a reused
    key with other parameters is refused with ``idempotency_error``)."""
    return str(uuid.uuid5(PAYMENT_NAMESPACE, appointment_id))


def intent_request(appointment_id: str, amount: int, currency: str) -> IntentRequest:
    """The keyword arguments of :meth:`Stripe.create_intent` for an appointment's fee:
    ``{amount, currency, idempotency_key: "appointment-<id>", metadata: {appointment_id,
    payment_id}}``; a function of its arguments only, so every retry sends the same."""
    return {"amount": amount, "currency": currency,
            "idempotency_key": f"appointment-{appointment_id}",
            "metadata": {"appointment_id": appointment_id,
                         "payment_id": payment_id_of(appointment_id)}}


PROVIDER_ROLES = frozenset({"doctor", "staff"})
"""Who cancels on the hospital's side (``AppointmentCancelled.cancelled_by_role``)."""


@dataclass(frozen=True)
class RefundPolicy:
    """How much of a paid appointment goes back when it is cancelled.

    * cancelled before the payment was recorded (never confirmed): everything;
    * the doctor or the hospital's staff cancel: everything, always;
    * the patient cancels at least ``full_window`` before the start: everything;
    * the patient cancels later: ``late_percent`` (0–100) of the amount, rounded down
      to a whole minor unit (``amount * late_percent // 100``; integers only).
    """

    full_window: timedelta
    late_percent: int

    def refund(self, amount: int, *, cancelled_by_role: str, cancelled_at: datetime,
               start: datetime, paid_at: datetime | None = None) -> tuple[int, str]:
        """``(minor units to refund, reason code)``; times aware UTC. Reason codes:
        ``cancelled_before_recorded`` (cancelled before ``paid_at``, when this service
        recorded the success: the appointment was never confirmed, whatever order the
        events came in), ``cancelled_by_provider``, ``inside_window``,
        ``late_cancellation``."""
        if paid_at is not None and cancelled_at < paid_at:
            return amount, "cancelled_before_recorded"
        if cancelled_by_role in PROVIDER_ROLES:
            return amount, "cancelled_by_provider"
        if start - cancelled_at >= self.full_window:
            return amount, "inside_window"
        return amount * self.late_percent // 100, "late_cancellation"


def paid_at(history: list[dict[str, Any]]) -> datetime | None:
    """When the payment reached ``succeeded`` (its history entries ``{status, at}``)."""
    times = [h["at"] for h in history if h["status"] == PaymentStatus.SUCCEEDED.value]
    return max(times) if times else None


REFUND_COUNTED = frozenset({"succeeded", "pending"})
"""Stripe refund statuses whose money is gone or on its way back (``failed`` and
``canceled`` refunds returned nothing; https://docs.stripe.com/api/refunds/object)."""


def refund_due(decided: int, at_stripe: list[tuple[str, int, str]]) -> tuple[int, int]:
    """``(minor units to refund now, minor units already refunded)`` for a decision to
    refund ``decided`` in total, given the intent's refunds at Stripe
    ``[(refund id, minor units, status)]``: only ``succeeded`` and ``pending`` ones
    count (:data:`REFUND_COUNTED`), so a refund made in the dashboard is neither
    repeated nor allowed to replace the decision, and a failed one is made again."""
    already = sum(amount for _, amount, status in at_stripe if status in REFUND_COUNTED)
    return max(0, decided - already), already


def refunded_status(amount: int, refunded: int) -> PaymentStatus | None:
    """The status after refunding ``refunded`` of ``amount`` minor units (``None``: 0)."""
    if refunded <= 0:
        return None
    return PaymentStatus.REFUNDED if refunded >= amount else PaymentStatus.PARTIALLY_REFUNDED


# --------------------------------------------------------------------------- billing
#
# Charge items and invoices are HealthFlow's own, in FHIR R4 terms
# (https://hl7.org/fhir/R4/chargeitem.html, https://hl7.org/fhir/R4/invoice.html).
# Every amount is an integer of minor units of one ISO 4217 currency per invoice.


class ChargeItemStatus(StrEnum):
    """FHIR R4 ``ChargeItem.status`` (http://hl7.org/fhir/chargeitem-status), the values
    used: ``billable`` (not on an invoice yet), ``billed`` (on an issued invoice),
    ``aborted`` (its invoice was cancelled; charge it again with a new item)."""

    BILLABLE = "billable"
    BILLED = "billed"
    ABORTED = "aborted"


class InvoiceStatus(StrEnum):
    """FHIR R4 ``Invoice.status`` (http://hl7.org/fhir/invoice-status): ``issued`` (owed,
    numbered), ``balanced`` (paid in full), ``cancelled`` (void; its number stays used).
    Partial payment is not a FHIR status: it shows as ``issued`` with ``paid`` between
    0 and ``total_gross`` (:func:`payment_state` says ``partially_paid``)."""

    ISSUED = "issued"
    BALANCED = "balanced"
    CANCELLED = "cancelled"


CONSULTATION_CODE = "consultation"
"""The charge item code of a paid consultation (the appointment's fee)."""

BASIS_POINTS = 10_000
"""100 % in basis points (1 bp = 0.01 %)."""


class InvoiceConflict(Conflict):
    """409: the invoice is not in a state that allows this (cancelled, already paid...)."""

    title, slug = "Invoice Conflict", "invoice-conflict"


def split_tax(gross: int, basis_points: int) -> tuple[int, int]:
    """``(net, tax)`` of a tax-inclusive price: prices in HealthFlow are what the patient
    pays (gross, as consumer prices are quoted in the EU, Directive 2006/112/EC art. 73
    and 98), and the tax in them at ``basis_points`` (700 = 7 %) is extracted.

    Rounding rule (integers only): ``net = gross * 10000 / (10000 + bp)`` rounded half
    up to a whole minor unit, ``tax = gross - net``; so ``net + tax == gross`` always,
    and an invoice's total is exactly the sum of its lines' gross amounts.

    Raises:
        ValueError: a negative amount or rate.
    """
    if gross < 0 or basis_points < 0:
        raise ValueError("amounts and tax rates are never negative")
    divisor = BASIS_POINTS + basis_points
    net = (2 * gross * BASIS_POINTS + divisor) // (2 * divisor)
    return net, gross - net


def invoice_lines(items: list[dict[str, Any]], basis_points: int) -> list[dict[str, Any]]:
    """The invoice lines (``Invoice.lineItem``) of charge items ``{_id, code, description,
    performer_id, quantity, unit_price, currency}``, in order: ``{sequence (1-based),
    charge_item_id, code, description, performer_id, quantity, unit_price, gross, net,
    tax}`` with
    ``gross = quantity * unit_price`` and ``(net, tax) = split_tax(gross, basis_points)``.

    Raises:
        UnprocessableContent: (422) no items, or items of more than one currency.
    """
    if not items:
        raise UnprocessableContent("an invoice needs at least one billable charge item")
    currencies = {i["currency"] for i in items}
    if len(currencies) != 1:
        raise UnprocessableContent(
            f"one invoice has one currency; these charge items have {sorted(currencies)}")
    lines = []
    for n, item in enumerate(items, start=1):
        gross = item["quantity"] * item["unit_price"]
        net, tax = split_tax(gross, basis_points)
        lines.append({"sequence": n, "charge_item_id": item["_id"], "code": item["code"],
                      "description": item["description"],
                      "performer_id": item.get("performer_id"), "quantity": item["quantity"],
                      "unit_price": item["unit_price"], "gross": gross, "net": net,
                      "tax": tax})
    return lines


def invoice_totals(lines: list[dict[str, Any]]) -> dict[str, int]:
    """``{total_net, total_tax, total_gross}``: sums of the lines (minor units)."""
    return {"total_net": sum(li["net"] for li in lines),
            "total_tax": sum(li["tax"] for li in lines),
            "total_gross": sum(li["gross"] for li in lines)}


def invoice_number(sequence: int) -> str:
    """The printed number of the ``sequence``-th invoice (1-based) of an issuer's series:
    ``INV-000042`` (six digits at least; the series never skips a value)."""
    return f"INV-{sequence:06d}"


def record_invoice_payment(status: InvoiceStatus, total_gross: int, paid: int,
                           amount: int, insurance_share: int = 0) -> tuple[int, InvoiceStatus]:
    """``(paid afterwards, status afterwards)`` when ``amount`` minor units are received
    from the patient for an invoice of ``total_gross`` of which ``paid`` was received
    before and ``insurance_share`` is the payer's (an adjudicated claim): ``balanced``
    once ``paid + insurance_share == total_gross``.

    Raises:
        InvoiceConflict: (409) the invoice is cancelled or already balanced.
        UnprocessableContent: (422) a non-positive amount or more than what is owed.
    """
    if status is not InvoiceStatus.ISSUED:
        raise InvoiceConflict(f"the invoice is {status.value}: nothing is owed on it")
    owed = total_gross - insurance_share - paid
    if amount <= 0 or amount > owed:
        raise UnprocessableContent(
            f"a payment must be 1 to {owed} minor units (what is owed), not {amount}")
    paid += amount
    settled = paid + insurance_share == total_gross
    return paid, InvoiceStatus.BALANCED if settled else InvoiceStatus.ISSUED


def payment_state(status: InvoiceStatus, total_gross: int, paid: int,
                  insurance_share: int = 0) -> str:
    """``paid``, ``partially_paid``, ``unpaid`` or ``void`` (cancelled), of the patient's
    share (``total_gross - insurance_share``)."""
    if status is InvoiceStatus.CANCELLED:
        return "void"
    if paid + insurance_share >= total_gross:
        return "paid"
    return "partially_paid" if paid > 0 else "unpaid"


# --------------------------------------------------------------------------- insurance
#
# FHIR R4 Coverage, Claim and ClaimResponse (https://hl7.org/fhir/R4/coverage.html,
# claim.html, claimresponse.html). How a payer adjudicates is the payer's business
# (healthflow.payment.clearinghouse); what HealthFlow decides is here.


class CoverageStatus(StrEnum):
    """FHIR R4 ``Coverage.status`` (http://hl7.org/fhir/fm-status), the values used:
    ``active`` and ``cancelled`` (the patient withdrew it; kept for the claims made)."""

    ACTIVE = "active"
    CANCELLED = "cancelled"


class ClaimOutcome(StrEnum):
    """FHIR R4 ``ClaimResponse.outcome`` (http://hl7.org/fhir/remittance-outcome), the
    values used: ``complete`` (adjudicated: ``benefit`` may be 0) and ``error`` (the
    payer could not adjudicate: no coverage in force, unknown plan...; nothing covered)."""

    COMPLETE = "complete"
    ERROR = "error"


class ClaimConflict(Conflict):
    """409: the invoice cannot be claimed now (paid on, cancelled, already claimed)."""

    title, slug = "Claim Conflict", "claim-conflict"


class EncounterNotCoded(Conflict):
    """409: an encounter billed on the invoice has no billing codes here yet (records
    publishes ``encounter.coded`` when it finishes); retry after ``Retry-After``."""

    title, slug = "Encounter Not Coded", "encounter-not-coded"


def ensure_claimable(status: InvoiceStatus, paid: int, claimed: bool) -> None:
    """An invoice may be claimed while ``issued`` with nothing paid on it and no claim
    adjudicated ``complete`` on it yet (one payer share per invoice; a claim answered
    ``error`` may be made again, e.g. with another coverage).

    Raises:
        ClaimConflict: (409) otherwise.
    """
    if status is not InvoiceStatus.ISSUED or paid:
        raise ClaimConflict(f"only an unpaid issued invoice can be claimed; this one is "
                            f"{status.value} with {paid} paid")
    if claimed:
        raise ClaimConflict("the invoice has an adjudicated claim already")


def status_after_claim(total_gross: int, insurance_share: int) -> InvoiceStatus:
    """An unpaid invoice the payer covers in full is ``balanced`` at once."""
    return InvoiceStatus.BALANCED if insurance_share >= total_gross else InvoiceStatus.ISSUED


# --------------------------------------------------------------------------- clinic finances


class EntryKind(StrEnum):
    """A ledger entry of a hospital's own books besides payments: money out or in."""

    EXPENSE = "expense"
    INCOME = "income"


class ExpenseCategory(StrEnum):
    """The fixed expense categories (Issue 15's list: the usual operating-cost lines of a
    clinic's profit-and-loss statement). ``other`` takes the rest; its ``reason`` says
    what it was."""

    SALARIES = "salaries"
    SUPPLIES = "supplies"
    EQUIPMENT = "equipment"
    RENT = "rent"
    UTILITIES = "utilities"
    MAINTENANCE = "maintenance"
    OTHER = "other"


class IncomeCategory(StrEnum):
    """The fixed categories of incomes other than patients' payments (Issue 15: lab work
    for others, donations, services such as room hire or training; ``other``)."""

    LAB = "lab"
    DONATION = "donation"
    SERVICES = "services"
    OTHER = "other"


CATEGORIES: dict[EntryKind, tuple[str, ...]] = {
    EntryKind.EXPENSE: tuple(ExpenseCategory), EntryKind.INCOME: tuple(IncomeCategory)}


class EntryStatus(StrEnum):
    """``recorded`` counts in the P&L; ``voided`` (with a reason) is kept and left out:
    entries are never deleted, so the books show every correction."""

    RECORDED = "recorded"
    VOIDED = "voided"


class EntryVoided(Conflict):
    """(409) The entry was voided: it can no longer change."""

    title, slug = "Entry Voided", "entry-voided"


MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def month_range(month: str) -> tuple[str, str]:
    """``("YYYY-MM-01", first day of the next month)`` of ``"YYYY-MM"`` (ISO 8601 calendar
    dates, so that ``first <= date < next`` selects the month's entries as text).

    Raises:
        ValueError: not ``YYYY-MM``.
    """
    found = MONTH.match(month)
    if not found:
        raise ValueError(f"month must be YYYY-MM, not {month!r}")
    year, mon = int(found[1]), int(found[2])
    after = f"{year + 1:04d}-01-01" if mon == 12 else f"{year:04d}-{mon + 1:02d}-01"
    return f"{month}-01", after
