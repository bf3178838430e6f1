"""Notification dispatch: a burst of appointment.booked events over RabbitMQ, end to end.

The service runs as in production (RabbitMQ transport, inbox consumer, stored
delivery queue, Twilio's client, aiosmtplib) against the loopback SMTP server
(aiosmtpd, its own thread) and the loopback Twilio Messages API. Each booking
makes one SMS and one email (plus a feed item). Figures:

* dispatch throughput: messages (SMS + email) accepted by the providers per
  second, from the first publish of the burst to the last message received;
* booked-to-email-received latency p50/p99 (publish of the event → the SMTP
  server has the message), in the burst (queueing included) and at a paced
  rate (``BENCH_PACED_RATE`` events/s: the latency a single booking sees).

The service runs with its default concurrency (prefetch 32, 16 sends in flight):
doubling both overloaded the embedded SecantusDB here (8 s operation timeouts, one
stall of 100 s). Contacts are written straight into the service's database beforehand (a
registration per user would add a welcome email to every measurement).
Run by ``make bench``; ``BENCH_BOOKINGS`` (default 1000) sets the burst size.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime, timedelta

import aio_pika
from pydantic import SecretStr

from healthflow.common import mongo
from healthflow.common.events.envelope import EXCHANGE, CloudEvent
from healthflow.common.events.rabbit.transport import RabbitTransport
from healthflow.common.events.transport import PublishError
from healthflow.devkit.benchmarking import (
    EmbeddedMongo,
    eventually,
    percentile,
    rabbitmq_vhost,
    report,
)
from healthflow.devkit.sandbox import ReceivedMail, SmtpSink, TwilioSink
from healthflow.devkit.testing import running_app
from healthflow.notification.app import create_app
from healthflow.notification.settings import Settings

N = int(os.environ.get("BENCH_BOOKINGS", "1000"))
PACED = int(os.environ.get("BENCH_PACED", "100"))
PACED_RATE = float(os.environ.get("BENCH_PACED_RATE", "20"))
WINDOW = 100  # publishes in flight
ACCOUNT_SID, AUTH_TOKEN = "AC" + "b" * 32, "bench-token"


def booking(i: int, start: datetime) -> CloudEvent:
    return CloudEvent(source="/healthflow/appointment", type="appointment.booked",
                      subject=f"appt-{i}", patientid=f"pat-{i}", data={
                          "appointment_id": f"appt-{i}", "patient_id": f"pat-{i}",
                          "doctor_id": "doc-1", "doctor_user_id": "doc-user-1",
                          "location_id": "hosp-1", "start": start.isoformat(),
                          "end": (start + timedelta(minutes=30)).isoformat(),
                          "timezone": "Europe/Berlin", "mode": "in_person",
                          "status": "booked", "booked_by": f"pat-{i}",
                          "booked_by_role": "patient"})


async def audit_stand_in(amqp_url: str) -> None:
    """A queue bound to notification.# as the audit service's is, so that the service's
    notification.sent events are routable (RabbitMQ refuses unroutable mandatory
    publishes); it keeps one message, dropping the rest."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        queue = await channel.declare_queue("bench.audit", durable=True,
                                            arguments={"x-max-length": 1})
        await queue.bind(exchange, "notification.#")


async def run(mongodb_url: str, amqp_url: str) -> None:
    await audit_stand_in(amqp_url)
    smtp = SmtpSink().start()
    twilio = await TwilioSink(ACCOUNT_SID, AUTH_TOKEN).start()
    arrived: dict[str, float] = {}
    smtp.listeners.append(lambda mail: _record(arrived, mail))
    settings = Settings(
        mongodb_url=mongodb_url, mongodb_database="bench_notification",
        transport="rabbitmq", amqp_url=amqp_url,
        smtp_port=smtp.port, twilio_base_url=twilio.base_url,
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=SecretStr(AUTH_TOKEN),
        default_quiet_hours="", log_level="WARNING")
    consuming = RabbitTransport(amqp_url, connection_name="bench-notification")
    publisher = RabbitTransport(amqp_url, connection_name="bench-publisher")
    app = create_app(settings, transport=consuming)
    total = N + PACED
    try:
        async with running_app(app):
            db = app.state.runtime.db
            await db["contacts"].insert_many([
                {"_id": f"pat-{i}", "email": f"pat-{i}@bench.test",
                 "phone": f"+4915{i:09d}", "full_name": f"Patient {i}", "roles": ["patient"],
                 "active": True} for i in range(total)])
            await publisher.connect()
            start = datetime.now(UTC) + timedelta(days=3)
            burst = [booking(i, start) for i in range(N)]
            published: dict[str, float] = {}

            began = time.perf_counter()
            for first in range(0, N, WINDOW):
                chunk = burst[first:first + WINDOW]
                for e in chunk:
                    published[f"pat-{e.subject.split('-')[1]}@bench.test"] = time.perf_counter()  # type: ignore[union-attr]
                await asyncio.gather(*(publish(publisher, e) for e in chunk))
            publish_s = time.perf_counter() - began

            async def consumed() -> bool:
                return await db["inbox"].count_documents({}) >= N

            await eventually(consumed, within=900, interval=0.05,
                             message="the burst was not consumed in time")
            consumed_s = time.perf_counter() - began
            await eventually(lambda: len(arrived) >= N and len(twilio.messages) >= N,
                             within=900, interval=0.02,
                             message="the burst was not delivered in time")
            done = max(arrived.values())
            elapsed = max(done, time.perf_counter() if len(twilio.messages) >= N else done) \
                - began
            burst_latency = [(arrived[a] - published[a]) * 1000 for a in published]

            paced: dict[str, float] = {}
            for i in range(N, total):
                paced[f"pat-{i}@bench.test"] = time.perf_counter()
                await publish(publisher, booking(i, start))
                await asyncio.sleep(1 / PACED_RATE)
            await eventually(lambda: all(a in arrived for a in paced), within=120,
                             interval=0.01, message="the paced bookings were not delivered")
            paced_latency = [(arrived[a] - t) * 1000 for a, t in paced.items()]
            duplicates = len(smtp.messages) - total
    finally:
        await publisher.close()
        await consuming.close()
        await twilio.stop()
        smtp.stop()
    messages = 2 * N
    report(f"notifications: burst of {N} appointment.booked over RabbitMQ "
           "(SMS via Twilio client + email via SMTP each)", [
               ("burst published in", f"{publish_s:.2f} s"),
               ("all events handled in", f"{consumed_s:.2f} s ({N / consumed_s:,.0f} events/s)"),
               ("all delivered in", f"{elapsed:.2f} s"),
               ("dispatch throughput", f"{messages / elapsed:,.0f} messages/s "
                                       f"({N / elapsed:,.0f} bookings/s)"),
               ("booked→email p50 (burst)", f"{percentile(burst_latency, 50):,.0f} ms"),
               ("booked→email p99 (burst)", f"{percentile(burst_latency, 99):,.0f} ms"),
               (f"booked→email p50 ({PACED_RATE:g}/s)", f"{percentile(paced_latency, 50):,.1f} ms"),
               (f"booked→email p99 ({PACED_RATE:g}/s)", f"{percentile(paced_latency, 99):,.1f} ms"),
               ("duplicate emails", str(duplicates)),
           ])


async def publish(publisher: RabbitTransport, event: CloudEvent) -> None:
    """Publish, again on an unknown outcome (no confirm in time on a loaded machine): the
    same event id, so the service's inbox drops a copy that did arrive."""
    for attempt in range(3):
        try:
            await publisher.publish(event)
            return
        except PublishError:
            if attempt == 2:
                raise


def _record(arrived: dict[str, float], mail: ReceivedMail) -> None:
    for rcpt in mail.rcpt_tos:
        arrived.setdefault(rcpt, mail.received_at)


async def main() -> None:
    logging.disable(logging.INFO)
    with rabbitmq_vhost() as amqp_url:
        server = EmbeddedMongo().start()
        try:
            await run(server.url, amqp_url)
        finally:
            await mongo.close_clients()
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
