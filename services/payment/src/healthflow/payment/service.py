"""Use cases of the payment service: who may see what, one transaction each, its events.

The checkout for an appointment (:func:`open_checkout`) runs when
``appointment.booked`` arrives with status ``pending_payment``; Stripe's webhooks
(:func:`apply_webhook`) move the payment and publish ``payment.succeeded``, which the
appointment service turns into a confirmed appointment.
"""

from __future__ import annotations

import logging
from datetime import UTC, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from healthflow.common import jobs
from healthflow.common.auth import Principal
from healthflow.common.errors import Forbidden, NotFound
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.problems import Problem
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.appointment import AppointmentBooked
from healthflow.payment import checkouts, disputes, eligibility, events, invoices, store
from healthflow.payment.domain import (
    EXPIRABLE,
    INTENT_EVENTS,
    AmountMismatch,
    ChargeItemStatus,
    HoldNotReleasable,
    PaymentStatus,
    check_money,
    ensure_reported_money,
    intent_request,
    next_status,
    payment_id_of,
)
from healthflow.payment.ledger import move, refund
from healthflow.payment.provider import Stripe
from healthflow.payment.settings import Settings

log = logging.getLogger(__name__)

HOLD_EXPIRY = "hold-expiry"
"""The job queue of hold deadlines (payload ``{payment_id, booked?}``, key
``hold-<payment id>``)."""

CHECKOUT = "checkout"
"""The job queue of checkouts to open at Stripe (payload ``{booked}``: the
``appointment.booked`` data; key ``checkout-<appointment id>``)."""


def provider(runtime: ServiceRuntime) -> Stripe:
    """The runtime's Stripe adapter (``create_app`` puts it there)."""
    stripe: Stripe = runtime.state["stripe"]
    return stripe


async def request_checkout(uow: UnitOfWork, booked: AppointmentBooked,
                           hold: timedelta) -> None:
    """What ``appointment.booked`` does, without calling Stripe: for a
    ``pending_payment`` booking with a fee, the ``checkout-<appointment id>`` job
    (:func:`open_checkout`, retried with backoff while Stripe is unreachable) and the
    hold's end ``hold-<payment id>`` ``hold`` from now (:func:`expire_hold`, whether or
    not a checkout ever opened), both in the consumer's transaction. A booking whose
    cancellation overtook it is ignored; a redelivery enqueues nothing new."""
    if booked.status != "pending_payment" or not booked.fee_amount or not booked.fee_currency:
        return
    check_money(booked.fee_amount, booked.fee_currency)  # a malformed fee is refused here
    now = utcnow()
    claim = await store.claim_appointment(uow.db, booked.appointment_id, {"booked_at": now},
                                          uow.session)
    if claim.get("cancelled_at") or claim.get("refused"):
        return
    data = booked.model_dump(mode="json")
    payment_id = payment_id_of(booked.appointment_id)
    await jobs.enqueue(uow.db, CHECKOUT, {"booked": data},
                       key=f"checkout-{booked.appointment_id}", session=uow.session, now=now)
    await jobs.enqueue(uow.db, HOLD_EXPIRY, {"payment_id": payment_id, "booked": data},
                       run_at=now + hold, key=f"hold-{payment_id}", session=uow.session,
                       now=now)


async def open_checkout(uow: UnitOfWork, stripe: Stripe, booked: AppointmentBooked,
                        hold: timedelta,
                        eligibility_required: frozenset[str] = frozenset()) -> None:
    """The payment of a ``pending_payment`` appointment: a Stripe PaymentIntent for its
    fee (idempotency key ``appointment-<id>``, parameters from the event only:
    :func:`~healthflow.payment.domain.intent_request`) and the local record, once per
    appointment.

    The hold ends ``hold`` later unless paid (a ``hold-expiry`` job, committed with the
    payment; :func:`expire_hold`). Bookings in any other status, without a fee, or
    already cancelled (``appointment.cancelled`` overtook this event) are ignored.
    The appointment's document is claimed first (:func:`store.claim_appointment`), so a
    cancellation handled at the same time waits for this checkout and then closes it.
    A redelivered event finds the record and changes nothing; if a first attempt died
    between Stripe and the commit, Stripe's idempotency key returns the same intent.

    At a hospital in ``eligibility_required`` (``Settings.eligibility_required_hospitals``)
    a patient without a coverage verified in force on the appointment's day (UTC;
    :func:`healthflow.payment.eligibility.verified_on`) is refused: no intent, the claim
    marked ``refused``, and ``payment.expired`` with status ``refused`` published, which
    the appointment service turns into a cancelled appointment and a released slot.
    """
    if booked.status != "pending_payment" or not booked.fee_amount or not booked.fee_currency:
        return
    claim = await store.claim_appointment(uow.db, booked.appointment_id,
                                          {"checkout_at": utcnow()}, uow.session)
    if claim.get("cancelled_at") or claim.get("refused") or claim.get("expired_at"):
        return  # cancelled, refused, or its hold ended before Stripe answered: nothing to pay
    if await store.by_appointment(uow.db, booked.appointment_id, session=uow.session):
        return
    amount, currency = check_money(booked.fee_amount, booked.fee_currency)
    hospital = await invoices.consultation_hospital(
        uow, {"location_id": booked.location_id, "doctor_id": booked.doctor_id})
    if hospital in eligibility_required and not await eligibility.verified_on(
            uow.db, booked.patient_id, booked.start.astimezone(UTC).date(), uow.session):
        await _refuse(uow, booked, amount, currency)
        return
    request = intent_request(booked.appointment_id, amount, currency)
    payment_id = payment_id_of(booked.appointment_id)
    intent = await stripe.create_intent(**request)
    now = utcnow()
    status = PaymentStatus.REQUIRES_PAYMENT.value
    await uow.db[store.PAYMENTS].insert_one({
        "_id": payment_id, "appointment_id": booked.appointment_id,
        "patient_id": booked.patient_id, "doctor_id": booked.doctor_id,
        "practitioner_id": practitioner_of(booked), "start": booked.start,
        "location_id": booked.location_id, "hospital_id": hospital,
        "amount": amount, "currency": currency, "status": status, "intent_id": intent.id,
        "client_secret": intent.client_secret, "created_at": now, "updated_at": now,
        "history": [{"status": status, "at": now, "stripe_event_id": None}],
        "revision": 0,
    }, session=uow.session)
    await jobs.enqueue(uow.db, HOLD_EXPIRY, {"payment_id": payment_id}, run_at=now + hold,
                       key=f"hold-{payment_id}", session=uow.session, now=now)


def practitioner_of(booked: AppointmentBooked) -> str:
    """The doctor's Practitioner id (their user id, as ``encounter.started`` names them
    in ``practitioner_id``): the appointment's ``doctor_user_id``, else its
    ``doctor_id`` (the same id by the doctor contract; older events lack the former)."""
    return booked.doctor_user_id or booked.doctor_id


async def _refuse(uow: UnitOfWork, booked: AppointmentBooked, amount: int,
                  currency: str) -> None:
    await uow.db[store.APPOINTMENTS].update_one(
        {"_id": booked.appointment_id}, {"$set": {"refused": "coverage-not-verified"}},
        session=uow.session)
    uow.publish(events.PaymentExpired(
        payment_id=payment_id_of(booked.appointment_id),
        appointment_id=booked.appointment_id, patient_id=booked.patient_id, amount=amount,
        currency=currency, status="refused", revision=1, refunded_amount=0),
        subject=payment_id_of(booked.appointment_id), patientid=booked.patient_id)


async def expire_hold(uow: UnitOfWork, stripe: Stripe, payment_id: str,
                      booked: AppointmentBooked | None = None) -> bool:
    """End an unpaid hold: cancel the PaymentIntent at Stripe first (so that no card can
    succeed on it later), then mark the payment ``expired`` and publish
    ``payment.expired`` (the appointment service cancels the appointment, releasing the
    slot). A payment already succeeded or expired is left alone; whether it expired.
    A booking (``booked``) whose checkout never opened (Stripe unreachable all along)
    expires without Stripe: its checkout job will not open one afterwards.

    Raises:
        HoldNotReleasable: Stripe is still processing a payment (the job is retried).
    """
    doc = await store.get_payment(uow.db, payment_id, session=uow.session)
    if doc is None and booked is not None:
        return await _expire_unopened(uow, booked)
    if doc is None or PaymentStatus(doc["status"]) not in EXPIRABLE:
        return False
    at_stripe = await stripe.cancel_intent(doc["intent_id"])
    if at_stripe == "succeeded":
        return False  # paid at the last moment: its webhook confirms the appointment
    if at_stripe != "canceled":
        raise HoldNotReleasable(f"PaymentIntent {doc['intent_id']} is {at_stripe}")
    await move(uow, doc, PaymentStatus.EXPIRED, None)
    return True


async def _expire_unopened(uow: UnitOfWork, booked: AppointmentBooked) -> bool:
    claim = await store.claim_appointment(uow.db, booked.appointment_id,
                                          {"hold_ended_at": utcnow()}, uow.session)
    if claim.get("cancelled_at") or claim.get("refused") or claim.get("expired_at"):
        return False
    if await store.by_appointment(uow.db, booked.appointment_id, session=uow.session):
        return False  # the checkout opened meanwhile: its payment expires as usual
    await uow.db[store.APPOINTMENTS].update_one(
        {"_id": booked.appointment_id}, {"$set": {"expired_at": utcnow()}},
        session=uow.session)
    payment_id = payment_id_of(booked.appointment_id)
    amount, currency = check_money(booked.fee_amount or 0, booked.fee_currency or "")
    uow.publish(events.PaymentExpired(
        payment_id=payment_id, appointment_id=booked.appointment_id,
        patient_id=booked.patient_id, amount=amount, currency=currency, status="expired",
        revision=1, refunded_amount=0),  # its only event: no checkout opens after it
        subject=payment_id, patientid=booked.patient_id)
    return True


def settings_of(runtime: ServiceRuntime) -> Settings:
    """The payment service's own settings (the runtime holds them as the base type)."""
    settings = runtime.settings
    assert isinstance(settings, Settings)
    return settings


def hold_of(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.hold_seconds)


async def readable(runtime: ServiceRuntime, principal: Principal) -> Document | None:
    """The one access rule of payments as a MongoDB filter: ``{}`` for
    ``payments:read_any`` (platform), the payments of the hospitals whose books the
    caller keeps for ``payments:read_hospital`` (a ``staff.assigned`` membership as
    accountant, :func:`healthflow.payment.store.hospitals_of`), else None (only the
    caller's own, ``payments:read_own``)."""
    if principal.has(Permission.PAYMENTS_READ_ANY):
        return {}
    if principal.has(Permission.PAYMENTS_READ_HOSPITAL):
        mine = await store.hospitals_of(runtime.db, principal.subject, invoices.ACCOUNTANT)
        return {"hospital_id": {"$in": mine}}
    return None


async def _may_read(runtime: ServiceRuntime, principal: Principal, doc: Document) -> bool:
    if doc["patient_id"] == principal.subject and principal.has(Permission.PAYMENTS_READ_OWN):
        return True
    staff = await readable(runtime, principal)
    if staff is None:
        return False
    hospitals = staff.get("hospital_id", {}).get("$in")
    return hospitals is None or doc.get("hospital_id") in hospitals


async def checkout(runtime: ServiceRuntime, principal: Principal,
                   appointment_id: str) -> Document:
    """The payment of ``appointment_id`` for its patient (client secret included), for
    the accountants of its hospital (``payments:read_hospital``) or the platform
    (``payments:read_any``; the secret is left out by the route).

    Raises:
        NotFound: (404) no payment yet (the booking event may still be on its way: retry),
            or one the caller may not read (existence is not revealed).
    """
    doc = await store.by_appointment(runtime.db, appointment_id)
    if doc is None or not await _may_read(runtime, principal, doc):
        raise NotFound(f"no payment for appointment {appointment_id} (yet)")
    return doc


async def list_payments(runtime: ServiceRuntime, principal: Principal,
                        patient_id: str | None, limit: int,
                        review: bool | None = None) -> list[Document]:
    """The caller's own payments, newest first; staff (:func:`readable`) those they may
    read, of ``patient_id`` when given; with ``review``, only those flagged for review
    (``True``) or not (``False``).

    Raises:
        Forbidden: (403) a patient naming another patient.
    """
    where = await readable(runtime, principal)
    if where is not None:
        if patient_id:
            where["patient_id"] = patient_id
    elif patient_id and patient_id != principal.subject:
        raise Forbidden("patients may only list their own payments")
    else:
        where = {"patient_id": principal.subject}
    if review is not None:
        where["review"] = {"$exists": review}
    return await store.find_payments(runtime.db, where, limit)


async def backfill_hospitals(runtime: ServiceRuntime) -> int:
    """Give payments stored before ``hospital_id`` existed their consultation's hospital
    (:func:`healthflow.payment.invoices.consultation_hospital`; run at start); how many.
    One the doctor read model cannot place yet gets ``None`` (platform readers only)."""
    done = 0
    async for doc in runtime.db[store.PAYMENTS].find({"hospital_id": {"$exists": False}}):
        async def place(uow: UnitOfWork, doc: Document = doc) -> None:
            hospital = await invoices.consultation_hospital(uow, doc)
            await uow.db[store.PAYMENTS].update_one(
                {"_id": doc["_id"], "hospital_id": {"$exists": False}},
                {"$set": {"hospital_id": hospital}}, session=uow.session)
        await runtime.transact(place, actor="system:payment")
        done += 1
    if done:
        log.info("payments given their hospital", extra={"count": done})
    return done


async def backfill_charge_item_hospitals(runtime: ServiceRuntime) -> int:
    """Give billable charge items of encounters without a hospital (online consultations,
    entered before the rule) their doctor's first affiliated hospital
    (:func:`healthflow.payment.store.first_hospital`; run at start), so that its finance
    can invoice them; how many. One whose doctor is not known yet stays as it is."""
    done = 0
    where = {"hospital_id": None, "status": ChargeItemStatus.BILLABLE.value}
    async for doc in runtime.db[store.CHARGE_ITEMS].find(where):
        hospital = await store.first_hospital(runtime.db, doc["performer_id"])
        if hospital is not None:
            await runtime.db[store.CHARGE_ITEMS].update_one(
                {"_id": doc["_id"], **where}, {"$set": {"hospital_id": hospital}})
            done += 1
    if done:
        log.info("charge items given their hospital", extra={"count": done})
    return done


async def apply_webhook(runtime: ServiceRuntime, payload: bytes,
                        signature: str | None) -> str:
    """Apply one Stripe webhook delivery: ``"applied"``, ``"duplicate"``, ``"ignored"``,
    ``"mismatch"``, ``"refunded"``, ``"disputed"`` or ``"refund_failed"``.

    Verified first (:meth:`Stripe.verify`); deduplicated by the Stripe event id in the
    same transaction as its effect; ``payment_intent.succeeded`` and
    ``payment_intent.payment_failed`` move the payment by
    :func:`~healthflow.payment.domain.next_status` (so a late failure never undoes a
    success); any other type or an intent not ours is recorded and ignored. A success
    for an appointment already cancelled (its payment not refunded yet) is refunded in
    full at once (``"refunded"``, ``payment.refunded``; no ``payment.succeeded``).
    Disputes (``charge.dispute.created|closed``) and failed refunds
    (``charge.refund.updated``, ``refund.updated``, ``refund.failed``) of a payment are
    recorded and flagged for review (:mod:`healthflow.payment.disputes`).

    An intent whose amount (``amount_received`` for a success) or currency is not the
    payment's answers ``"mismatch"`` (200, so Stripe stops retrying): the event is
    recorded with that outcome, the payment flagged for review and left as it was, and an
    error logged (ids only).

    Only the dedup insert's own duplicate key means "already applied"; any other error
    rolls the transaction back and surfaces as a 500 problem without detail, so Stripe
    delivers the event again.

    Raises:
        BadRequest: (400) the signature or the body does not verify.
        WebhookFailed: (500) a unique key other than the event id refused a write.
    """
    stripe = provider(runtime)
    event = stripe.verify(payload, signature)
    intent: dict[str, Any] = event.data.object.to_dict()

    async def write(uow: UnitOfWork) -> str:
        if await store.seen_event(uow.db, event.id, uow.session):
            return "duplicate"
        try:
            await uow.db[store.WEBHOOK_EVENTS].insert_one(
                {"_id": event.id, "type": event.type,
                 "intent_id": intent.get("payment_intent") or intent.get("id"),
                 "received_at": utcnow()}, session=uow.session)
        except DuplicateKeyError:  # the same event delivered concurrently: one effect
            raise _SeenConcurrently from None
        after = await disputes.apply(uow, event.type, intent, event.id)
        if after is not None:
            return after
        return await _apply_intent_event(uow, stripe, event.id, event.type, intent)

    try:
        outcome: str = await runtime.transact(write, actor="stripe")
    except _SeenConcurrently:
        outcome = "duplicate"
    except DuplicateKeyError as exc:  # another unique key: a fault, not a repeat
        log.error("stripe webhook failed on a unique key; Stripe retries it",
                  extra={"stripe_event": event.id, "type": event.type,
                         "index": (exc.details or {}).get("keyPattern")})
        raise WebhookFailed("the webhook could not be applied; it has been logged") from None
    log.info("stripe webhook", extra={"stripe_event": event.id, "type": event.type,
                                      "outcome": outcome})
    return outcome


async def _apply_intent_event(uow: UnitOfWork, stripe: Stripe, event_id: str,
                              event_type: str, intent: dict[str, Any]) -> str:
    """The effect of a PaymentIntent event on its payment or invoice checkout (see
    :func:`apply_webhook`), inside the webhook's transaction; the outcome."""
    reported = INTENT_EVENTS.get(event_type)
    doc = await store.by_intent(uow.db, intent.get("id") or "", session=uow.session)
    if reported is not None and doc is None:
        invoice_checkout = await checkouts.by_intent(uow, intent.get("id") or "")
        if invoice_checkout is not None:
            return await checkouts.apply_intent_event(uow, stripe, invoice_checkout,
                                                      reported, intent)
    if reported is None or doc is None:
        return "ignored"
    if await _mismatch(uow, doc, intent, reported, event_id):
        return "mismatch"
    if reported is PaymentStatus.SUCCEEDED and await _cancelled_unrefunded(uow, doc):
        await refund(uow, stripe, doc, doc["amount"], "cancelled_before_recorded")
        return "refunded"
    target = next_status(PaymentStatus(doc["status"]), reported)
    if target is None:
        return "ignored"
    await move(uow, doc, target, event_id)
    if target is PaymentStatus.SUCCEEDED:
        await invoices.schedule_billing(uow, doc["_id"])
    return "applied"


class _SeenConcurrently(Exception):
    """The dedup insert of a webhook's event id met the same id committed meanwhile."""


class WebhookFailed(Problem):
    """500: a webhook could not be applied (nothing of it was kept); Stripe retries it."""

    title, slug = "Webhook Failed", "webhook-failed"


async def _cancelled_unrefunded(uow: UnitOfWork, doc: Document) -> bool:
    """Whether a success reported now is of an appointment cancelled while its payment was
    still unpaid (then all of it goes back at once). A payment already recorded paid is
    refunded by the cancellation policy (its refund job, or reconciliation's sweep), never
    in full by a repeated success report."""
    if "refund" in doc or doc["status"] in (PaymentStatus.SUCCEEDED.value,
                                            PaymentStatus.REFUNDED.value,
                                            PaymentStatus.PARTIALLY_REFUNDED.value):
        return False
    claim = await uow.db[store.APPOINTMENTS].find_one({"_id": doc["appointment_id"]},
                                                      session=uow.session)
    return bool(claim and claim.get("cancelled_at"))


async def _mismatch(uow: UnitOfWork, doc: Document, intent: dict[str, Any],
                    reported: PaymentStatus, event_id: str) -> bool:
    """Whether the intent's money is not the payment's (then recorded and flagged)."""
    amount = intent.get("amount")
    if reported is PaymentStatus.SUCCEEDED and "amount_received" in intent:
        amount = intent["amount_received"]  # what was taken; localstripe lacks the field
    try:
        ensure_reported_money(doc["amount"], doc["currency"], int(amount or 0),
                              str(intent.get("currency") or ""))
    except AmountMismatch as exc:
        await uow.db[store.WEBHOOK_EVENTS].update_one(
            {"_id": event_id}, {"$set": {"outcome": "mismatch", "detail": exc.detail}},
            session=uow.session)
        await store.flag_for_review(uow.db, doc["_id"], "webhook:amount_mismatch",
                                    session=uow.session)
        log.error("stripe webhook amount mismatch: payment flagged for review",
                  extra={"stripe_event": event_id, "payment_id": doc["_id"]})
        return True
    return False
