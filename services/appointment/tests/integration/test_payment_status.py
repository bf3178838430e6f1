"""Issue 15: payment status shown with each appointment, and prepayment required by the
doctor. Payment events arrive through the (in-process) transport into the consumer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from healthflow.common.events.envelope import CloudEvent

from .conftest import Service, next_weekday, schedule
from .test_appointments import berlin, book

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


def payment_event(appointment_id: str, patient_id: str, type_: str, status: str, *,
                  at: datetime, amount: int = 4000, **extra: Any) -> CloudEvent:
    """A payment event as the payment service publishes it, sent at ``at``."""
    return CloudEvent(source="/healthflow/payment", type=type_, subject="payment/p1",
                      time=at, data={"payment_id": "p1", "appointment_id": appointment_id,
                                     "patient_id": patient_id, "amount": amount,
                                     "currency": "EUR", "status": status, **extra})


def succeeded(aid: str, pid: str, at: datetime) -> CloudEvent:
    return payment_event(aid, pid, "payment.succeeded", "succeeded", at=at, intent_id="pi_1")


def refunded(aid: str, pid: str, at: datetime, amount: int, status: str) -> CloudEvent:
    return payment_event(aid, pid, "payment.refunded", status, at=at, refund_amount=amount,
                         refund_id=f"re_{amount}", reason="late_cancellation")


async def read(svc: Service, headers: dict[str, str], aid: str) -> dict[str, Any]:
    one = (await svc.client.get(f"/api/v1/appointments/{aid}", headers=headers)).json()
    listed = (await svc.client.get("/api/v1/appointments", headers=headers)).json()["items"]
    [same] = [a for a in listed if a["id"] == aid]
    assert same["payment"] == one["payment"]  # the list shows what the one shows
    return one


async def test_each_appointment_shows_its_payment_newest_wins(svc: Service) -> None:
    await svc.publish_doctor(schedule("dr-status"))
    patient_id, patient = svc.patient()
    day = next_weekday(2)
    held = (await book(svc, patient, "dr-status", berlin(day, 14), mode="online")).json()
    aid = held["id"]
    assert held["payment"] == {"status": "pending", "amount": 4000, "currency": "EUR",
                               "refunded_amount": 0}
    in_person = (await book(svc, patient, "dr-status", berlin(day, 9))).json()
    assert in_person["status"] == "booked" and in_person["payment"] is None

    publish = svc.runtime.transport.publish
    # the partial refund overtakes the success; a full refund follows; then both
    # older events are delivered again: the newest state stands
    await publish(refunded(aid, patient_id, T0 + timedelta(hours=2), 1000,
                           "partially_refunded"))
    assert (await read(svc, patient, aid))["payment"] == {
        "status": "partially_refunded", "amount": 4000, "currency": "EUR",
        "refunded_amount": 1000}
    await publish(succeeded(aid, patient_id, T0))
    after = await read(svc, patient, aid)
    assert after["status"] == "confirmed"  # the success still confirms the appointment
    assert after["payment"]["status"] == "partially_refunded"
    await publish(refunded(aid, patient_id, T0 + timedelta(hours=3), 4000, "refunded"))
    await publish(refunded(aid, patient_id, T0 + timedelta(hours=2), 1000,
                           "partially_refunded"))
    await publish(succeeded(aid, patient_id, T0))
    assert (await read(svc, patient, aid))["payment"] == {
        "status": "refunded", "amount": 4000, "currency": "EUR", "refunded_amount": 4000}
    # the doctor and the hospital's staff see it too
    doctor = svc.tokens.headers("user-dr-status", roles=["doctor"])
    assert (await read(svc, doctor, aid))["payment"]["status"] == "refunded"


async def test_an_expired_hold_shows_as_expired(svc: Service) -> None:
    await svc.publish_doctor(schedule("dr-exp"))
    patient_id, patient = svc.patient()
    held = (await book(svc, patient, "dr-exp", berlin(next_weekday(3), 15),
                       mode="online")).json()
    await svc.runtime.transport.publish(payment_event(
        held["id"], patient_id, "payment.expired", "expired", at=T0))
    after = await read(svc, patient, held["id"])
    assert after["status"] == "cancelled"
    assert after["payment"] == {"status": "expired", "amount": 4000, "currency": "EUR",
                                "refunded_amount": 0}


async def test_a_doctor_requiring_prepayment_holds_in_person_bookings(svc: Service) -> None:
    """In person with a doctor whose fee ``requires_prepayment``: ``pending_payment``
    (slot held), then the payment books and confirms it."""
    data = schedule("dr-prepay")
    data["fee"] = {"amount": 6000, "currency": "EUR", "requires_prepayment": True}
    await svc.publish_doctor(data)
    patient_id, patient = svc.patient()
    start = berlin(next_weekday(4), 10)
    held = (await book(svc, patient, "dr-prepay", start)).json()
    assert (held["mode"], held["status"]) == ("in_person", "pending_payment")
    assert held["payment"]["status"] == "pending" and held["payment"]["amount"] == 6000
    [booked] = await svc.outbox("appointment.booked", held["id"])
    assert booked["envelope"]["data"]["status"] == "pending_payment"
    assert booked["envelope"]["data"]["fee_amount"] == 6000
    _, other = svc.patient()
    assert (await book(svc, other, "dr-prepay", start)).status_code == 409  # held
    await svc.runtime.transport.publish(payment_event(
        held["id"], patient_id, "payment.succeeded", "succeeded", at=T0, amount=6000,
        intent_id="pi_1"))
    after = await read(svc, patient, held["id"])
    assert after["status"] == "confirmed"
    assert [h["status"] for h in after["status_history"]] == [
        "pending_payment", "booked", "confirmed"]
    assert after["payment"]["status"] == "succeeded"


async def test_a_failed_refund_and_a_dispute_show_in_revision_order_whatever_arrives_first(
        svc: Service) -> None:
    """The payment's status goes back (refunded → the refund failed → succeeded; disputed
    → won → succeeded): delivered out of order and twice, the highest revision stands."""
    await svc.publish_doctor(schedule("dr-revision"))
    patient_id, patient = svc.patient()
    aid = (await book(svc, patient, "dr-revision", berlin(next_weekday(1), 14),
                      mode="online")).json()["id"]

    def at(revision: int, type_: str, status: str, refunded_amount: int,
           **extra: Any) -> CloudEvent:
        return payment_event(aid, patient_id, type_, status, revision=revision,
                             refunded_amount=refunded_amount,
                             at=T0 + timedelta(hours=revision), **extra)

    paid = at(1, "payment.succeeded", "succeeded", 0, intent_id="pi_1")
    back = at(2, "payment.refunded", "refunded", 4000, refund_amount=4000,
              refund_id="re_1", reason="cancelled_by_provider")
    failed = at(3, "payment.refund_failed", "succeeded", 0, refund_id="re_1",
                refund_amount=4000, failure_reason="expired_or_canceled_card")
    disputed = at(4, "payment.disputed", "disputed", 0, dispute_id="dp_1",
                  dispute_status="needs_response", dispute_amount=4000, reason="fraudulent")
    won = at(5, "payment.disputed", "succeeded", 0, dispute_id="dp_1",
             dispute_status="won", dispute_amount=4000, reason="fraudulent")
    publish = svc.runtime.transport.publish

    async def shown() -> tuple[str, int]:
        payment = (await read(svc, patient, aid))["payment"]
        return payment["status"], payment["refunded_amount"]

    await publish(back)
    assert await shown() == ("refunded", 4000)
    await publish(failed)
    assert await shown() == ("succeeded", 0)  # no money went back after all
    await publish(paid)
    await publish(back)  # redelivered late: older
    assert await shown() == ("succeeded", 0)
    assert (await read(svc, patient, aid))["status"] == "confirmed"
    await publish(disputed)
    assert await shown() == ("disputed", 0)
    await publish(won)
    await publish(disputed)  # again, late
    assert await shown() == ("succeeded", 0)
