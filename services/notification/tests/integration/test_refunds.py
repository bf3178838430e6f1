"""``payment.refunded`` tells the patient how much went back, once, in their locale's
money format (integer minor units in, CLDR digits out)."""

from __future__ import annotations

from healthflow.contracts.payment import PaymentRefunded
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
