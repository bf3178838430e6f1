"""``payment.refunded`` tells the patient how much went back, once, in their locale's
money format (integer minor units in, CLDR digits out)."""

from __future__ import annotations

from healthflow.contracts.payment import PaymentRefunded, PaymentRefundFailed
from healthflow.devkit.testing import eventually
from healthflow.notification.rendering import money

from ..conftest import Notif, event, user_registered


def test_minor_units_are_shown_with_the_currencys_digits_per_locale() -> None:
    assert money(6000, "EUR", "en") == "€60.00"
    assert money(6000, "EUR", "de") == "60,00\xa0€"
    assert money(1505, "EUR", "en") == "€15.05"
    assert money(6000, "JPY", "en") == "¥6,000"  # JPY has no minor unit


async def test_a_refund_is_announced_once_with_its_amount(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-refund", email="refund@patients.test"))
    notif.clock.advance(seconds=1)
    refunded = event("payment.refunded", PaymentRefunded(
        payment_id="pay-1", appointment_id="appt-1", patient_id="pat-refund", amount=6000,
        currency="EUR", status="partially_refunded", refund_amount=1505,
        refund_id="re_1", reason="late_cancellation").model_dump(mode="json"),
        subject="payment/pay-1")
    await notif.deliver(refunded, refunded)  # a redelivery sends nothing more

    await eventually(lambda: len(notif.smtp.to("refund@patients.test")) == 2,
                     message="the welcome and the refund email were not received")
    mail = notif.smtp.to("refund@patients.test")[-1]
    assert mail.message["Subject"] == "Your refund of €15.05"
    assert "whole payment" not in str(mail.message)
    deliveries = await notif.deliveries(source_id=refunded.id)
    assert {d["channel"] for d in deliveries} >= {"email", "sms"}
    assert all(d["template"] == "payment_refunded" for d in deliveries)
    assert len([d for d in deliveries if d["channel"] == "email"]) == 1


async def test_a_failed_refund_is_announced_so_the_patient_is_not_left_waiting(
        notif: Notif) -> None:
    await notif.deliver(user_registered("pat-rf", email="rf@patients.test"))
    notif.clock.advance(seconds=1)
    failed = event("payment.refund_failed", PaymentRefundFailed(
        payment_id="pay-2", appointment_id="appt-2", patient_id="pat-rf", amount=6000,
        currency="EUR", status="succeeded", refund_amount=6000, refund_id="re_2",
        failure_reason="expired_or_canceled_card").model_dump(mode="json"),
        subject="payment/pay-2")
    await notif.deliver(failed, failed)

    await eventually(lambda: len(notif.smtp.to("rf@patients.test")) == 2,
                     message="the welcome and the refund-failed email were not received")
    mail = notif.smtp.to("rf@patients.test")[-1]
    assert mail.message["Subject"] == "Your refund of €60.00 did not go through"
    assert "finance team" in mail.part("text/plain")
    deliveries = await notif.deliveries(source_id=failed.id)
    assert sorted(d["channel"] for d in deliveries if d["channel"] != "push") == ["email"]
    assert await notif.db["feed"].count_documents(
        {"user_id": "pat-rf", "template": "payment_refund_failed"}) == 1
