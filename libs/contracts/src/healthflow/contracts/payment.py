"""Contracts of the events the payment service publishes (routing key = type; ``patientid``
set). Identifiers and amounts only, never personal data: ``amount`` is an integer in the
currency's minor units, ``currency`` an ISO 4217 code (upper case)."""

from __future__ import annotations

from healthflow.contracts.base import EventPayload, event_type

PUBLISHER = "payment"


class PaymentEvent(EventPayload):
    """Fields every payment event shares."""

    payment_id: str
    appointment_id: str
    patient_id: str
    amount: int  # minor units of ``currency``
    currency: str  # ISO 4217
    status: str  # see healthflow.payment.domain.PaymentStatus
    # the payment's revision: 1, 2, ... one up with each change the payment service
    # publishes (in the transaction of the change), so consumers order a payment's events
    # by it (a status can go back: a failed refund, a won dispute), and the total
    # refunded afterwards (minor units of ``currency``; 0 when nothing is, a failed
    # refund taken off); both added in a compatible change, so older events lack them
    revision: int | None = None
    refunded_amount: int | None = None


@event_type("payment.succeeded", version=1, publisher=PUBLISHER)
class PaymentSucceeded(PaymentEvent):
    """Stripe reported the appointment's PaymentIntent ``intent_id`` succeeded."""

    intent_id: str


@event_type("payment.refunded", version=1, publisher=PUBLISHER)
class PaymentRefunded(PaymentEvent):
    """``refund_amount`` (minor units of ``currency``) went back to the patient through the
    Stripe refund ``refund_id``; ``reason``: ``cancelled_by_provider``, ``inside_window``,
    ``late_cancellation`` or ``cancelled_before_recorded`` (paid while being cancelled).
    ``status`` is ``refunded`` (all of ``amount``) or ``partially_refunded``."""

    refund_amount: int
    refund_id: str
    reason: str


@event_type("payment.expired", version=1, publisher=PUBLISHER)
class PaymentExpired(PaymentEvent):
    """The hold ended unpaid: the PaymentIntent was cancelled at Stripe, the slot is to be
    released (the appointment service cancels the appointment). ``status`` ``refused``:
    no hold was opened, the hospital requires a coverage verified in force (eligibility)
    and the patient had none; the appointment is cancelled the same way."""


@event_type("payment.disputed", version=1, publisher=PUBLISHER)
class PaymentDisputed(PaymentEvent):
    """The patient's card issuer disputed the charge (a chargeback; Stripe
    ``charge.dispute.created``), or the dispute ``dispute_id`` closed
    (``charge.dispute.closed``). ``dispute_status`` is Stripe's (``needs_response``,
    ``under_review``, ... while open; ``won``, ``lost`` or ``warning_closed`` once
    closed), ``dispute_amount`` the minor units of ``currency`` in dispute, ``reason``
    Stripe's code (``fraudulent``, ``duplicate``, ...). ``status`` is the payment's
    afterwards: ``disputed`` while open or lost, its earlier status once won. Finance
    reviews every dispute."""

    dispute_id: str
    dispute_status: str
    dispute_amount: int  # minor units of ``currency``
    reason: str


@event_type("payment.refund_failed", version=1, publisher=PUBLISHER)
class PaymentRefundFailed(PaymentEvent):
    """Stripe reported the refund ``refund_id`` of ``refund_amount`` (minor units of
    ``currency``) failed (``charge.refund.updated`` / ``refund.failed``;
    ``failure_reason`` Stripe's code, e.g. ``expired_or_canceled_card``): the money did
    not go back. The payment no longer counts it as refunded (``status`` afterwards) and
    is flagged for finance to review; an earlier ``payment.refunded`` for it is void."""

    refund_id: str
    refund_amount: int  # minor units of ``currency``
    failure_reason: str


@event_type("invoice.issued", version=1, publisher=PUBLISHER)
class InvoiceIssued(EventPayload):
    """The invoice ``invoice_id`` (FHIR R4 ``Invoice``) was issued with ``number``, the
    next of its issuer's gap-free series; ``hospital_id`` is the issuer (``None``: the
    platform itself, for a consultation with no hospital). ``total_gross`` is the
    total in minor units of ``currency`` (ISO 4217), tax included."""

    invoice_id: str
    number: str
    hospital_id: str | None
    patient_id: str
    total_gross: int  # minor units of ``currency``
    currency: str  # ISO 4217


@event_type("invoice.paid", version=1, publisher=PUBLISHER)
class InvoicePaid(EventPayload):
    """The patient paid ``amount`` (minor units of ``currency``, ISO 4217) of the invoice
    ``invoice_id`` by card: the PaymentIntent ``intent_id`` of its checkout
    ``checkout_id`` succeeded. ``status`` is the invoice's afterwards (``balanced`` when
    nothing is left for the patient)."""

    invoice_id: str
    checkout_id: str
    patient_id: str
    amount: int  # minor units of ``currency``
    currency: str  # ISO 4217
    intent_id: str
    status: str


@event_type("claim.submitted", version=1, publisher=PUBLISHER)
class ClaimSubmitted(EventPayload):
    """The claim ``claim_id`` (FHIR R4 ``Claim``) for the invoice ``invoice_id`` was sent
    to the payer of the coverage ``coverage_id`` through the clearinghouse; ``total`` is
    what it asks for, in minor units of ``currency`` (ISO 4217). Identifiers and amounts
    only: no member id, payer name or diagnosis."""

    claim_id: str
    invoice_id: str
    coverage_id: str
    patient_id: str
    hospital_id: str | None
    total: int  # minor units of ``currency``
    currency: str  # ISO 4217


@event_type("claim.adjudicated", version=1, publisher=PUBLISHER)
class ClaimAdjudicated(EventPayload):
    """The payer answered the claim ``claim_id`` with the ``ClaimResponse``
    ``claim_response_id``: ``outcome`` ``complete`` (``benefit`` is what the payer
    covers, ``patient_share`` what remains for the patient on the invoice) or ``error``
    (nothing covered: the patient owes the whole invoice). Minor units of ``currency``."""

    claim_id: str
    claim_response_id: str
    invoice_id: str
    patient_id: str
    outcome: str
    benefit: int  # minor units of ``currency``
    patient_share: int  # minor units of ``currency``
    currency: str  # ISO 4217


class LedgerEntryEvent(EventPayload):
    """Fields every clinic-finance event shares: the entry ``entry_id`` of the hospital
    ``hospital_id``'s books, its ``category`` (fixed sets:
    ``healthflow.payment.domain.ExpenseCategory`` / ``IncomeCategory``), ``date`` (the
    calendar date it belongs to, ``YYYY-MM-DD``), ``amount_minor`` (minor units of
    ``currency``, ISO 4217) and who did it (``by``, a user id). Never the supplier,
    the payer or the free-text reason."""

    entry_id: str
    hospital_id: str
    category: str
    date: str
    amount_minor: int  # minor units of ``currency``
    currency: str  # ISO 4217
    by: str


@event_type("expense.recorded", version=1, publisher=PUBLISHER)
class ExpenseRecorded(LedgerEntryEvent):
    """An accountant recorded an expense of the hospital."""


@event_type("expense.corrected", version=1, publisher=PUBLISHER)
class ExpenseCorrected(LedgerEntryEvent):
    """An accountant changed a recorded expense; the fields are as they are now."""


@event_type("expense.voided", version=1, publisher=PUBLISHER)
class ExpenseVoided(LedgerEntryEvent):
    """An accountant voided an expense: kept, but left out of the P&L from now on."""


@event_type("income.recorded", version=1, publisher=PUBLISHER)
class IncomeRecorded(LedgerEntryEvent):
    """An accountant recorded an income other than a patient's payment."""


@event_type("income.corrected", version=1, publisher=PUBLISHER)
class IncomeCorrected(LedgerEntryEvent):
    """An accountant changed a recorded income; the fields are as they are now."""


@event_type("income.voided", version=1, publisher=PUBLISHER)
class IncomeVoided(LedgerEntryEvent):
    """An accountant voided an income: kept, but left out of the P&L from now on."""
