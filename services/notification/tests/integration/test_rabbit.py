"""The notification service on the real RabbitMQ transport (a vhost of its own)."""

from __future__ import annotations

from datetime import UTC, datetime

from healthflow.common.events.rabbit.transport import RabbitTransport
from healthflow.devkit.sandbox import SmtpSink, TwilioSink
from healthflow.devkit.testing import TokenFactory, eventually, running_app
from healthflow.notification.app import create_app
from healthflow.notification.domain import SettableClock
from healthflow.notification.settings import Settings

from ..conftest import appointment, event, user_registered

START = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)


async def test_events_from_rabbitmq_send_once_even_when_published_twice(
        settings: Settings, amqp_url: str, tokens: TokenFactory, clock: SettableClock,
        smtp: SmtpSink, twilio: TwilioSink) -> None:
    consuming = RabbitTransport(amqp_url, connection_name="notification-test")
    publisher = RabbitTransport(amqp_url, connection_name="notification-test-publisher")
    app = create_app(settings.model_copy(update={"transport": "rabbitmq",
                                                 "amqp_url": amqp_url}),
                     transport=consuming, clock=clock)
    app.state.verifier = tokens.verifier()
    try:
        async with running_app(app):
            await publisher.connect()
            await publisher.publish(user_registered("pat-mq", phone="+4915100000700"))
            await publisher.publish(event("patient.consent_changed", {
                "patient_id": "pat-mq", "channel": "email", "granted": False,
                "at": clock.now().isoformat()}))
            db = app.state.runtime.db

            async def known() -> bool:  # the consumer runs deliveries concurrently
                contact = await db["contacts"].find_one({"_id": "pat-mq"})
                return contact is not None and "email" in contact.get("consent", {}) and (
                    "phone" in contact)

            await eventually(known, message="the contact read model was not built")
            booked = appointment("appointment.booked", "appt-mq", "pat-mq", START)
            await publisher.publish(booked)
            await publisher.publish(booked)  # redelivered: still one SMS
            await publisher.publish(appointment("appointment.completed", "other", "p", START,
                                                status="completed"))

            await eventually(lambda: len(twilio.to("+4915100000700")) == 1,
                             message="the confirmation SMS did not arrive")

            async def drained() -> bool:
                return await consuming.queue_depths("notification") == {"queue": 0, "dlq": 0}

            await eventually(drained, message="the queue did not drain")

            async def all_sent() -> bool:
                statuses = [d["status"] async for d in db["deliveries"].find(
                    {"source_id": booked.id})]
                return sorted(statuses) == ["sent", "suppressed"]

            await eventually(all_sent, message="deliveries not settled")
            assert len(twilio.to("+4915100000700")) == 1
            # email consent was withdrawn: no confirmation by email (the welcome went out
            # only if it was sent before the withdrawal arrived; consent is checked again
            # at send time)
            subjects = {m.message["Subject"] for m in smtp.to("pat-mq@patients.test")}
            assert subjects <= {"Welcome to HealthFlow - please confirm your email"}
    finally:
        await publisher.close()
        await consuming.close()
