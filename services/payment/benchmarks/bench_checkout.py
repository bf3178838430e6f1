"""Checkout-to-confirmed latency at 20 concurrent patients, through the gateway.

Starts the platform (auth, hospital, doctor, appointment, payment, the gateway and
localstripe; every service its own process over RabbitMQ, SecantusDB) on free ports,
sets up a verified hospital and two verified doctors with online hours, signs up
``BENCH_CHECKOUT_PATIENTS`` patients, then has them all at once book an online
consultation, wait for its checkout (the PaymentIntent), pay with Stripe's test card
through the ``stripe`` library, and wait until the appointment is confirmed (webhook →
``payment.succeeded`` → appointment). Prints p50/p99 of

* booking → confirmed (the whole checkout as the patient sees it), and
* card confirmed → appointment confirmed (webhook to confirmation).

localstripe waits one second before it sends any webhook (``asyncio.sleep(1)`` in its
``_send_webhook``), so the second figure includes that fixed second; Stripe itself
delivers within seconds, without such a floor.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import stripe

from healthflow.client.api import ApiError, Gateway, Session
from healthflow.devkit.benchmarking import percentile, report
from healthflow.devkit.testing import platform_process, rabbitmq_vhost

PATIENTS = int(os.environ.get("BENCH_CHECKOUT_PATIENTS", "20"))
DOCTORS = 2
PASSWORD = "Bench-passphrase-correct-horse-42"  # noqa: S105 - throwaway accounts
ONLY = "auth,hospital,doctor,appointment,payment"


async def setup(gateway: Gateway, admin: Session, tag: str) -> list[str]:
    hospital = await admin.register_hospital({
        "name": f"Bench Clinic {tag}", "address": {"lines": ["1 Bench St"], "city": "Berlin",
                                                   "country": "DE"},
        "contacts": [], "time_zone": "UTC", "services": ["general-practice"]})
    await admin.verify_hospital(hospital["id"])
    doctors = []
    for n in range(DOCTORS):
        email = f"bench-pay-doc-{tag}-{n}@example.org"
        await admin.create_user(email, PASSWORD, f"Doctor {n}", ["doctor"], "+4915112340000")
        me = await gateway.login(email, PASSWORD)
        profile = await me.register_doctor({
            "name": {"given": ["Bench"], "family": f"Doctor{n}"},
            "licence": {"number": f"P-{tag}-{n}", "issuer": "Bench Council", "country": "DE"},
            "specialties": ["general-practice"], "languages": ["en"],
            "affiliations": [{"hospital_id": hospital["id"]}], "modes": ["online"],
            "fee": {"amount": 5000, "currency": "EUR"}, "time_zone": "UTC"})
        await admin.verify_doctor(profile["id"])
        weekly = [{"location": "online", "day": day, "start": "00:00", "end": "23:55"}
                  for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]
        await me.put_availability(profile["id"], {"slot_minutes": 5, "weekly": weekly})
        doctors.append(profile["id"])
    return doctors


def pay(stripe_url: str, client_secret: str) -> None:
    """What the patient's app does with the client secret (the ``stripe`` library)."""
    warnings.simplefilter("ignore", DeprecationWarning)
    api = stripe.StripeClient("sk_test_bench", base_addresses={"api": stripe_url}).v1
    intent_id = client_secret.split("_secret_")[0]
    method = api.payment_methods.create(params={"type": "card", "card": {
        "number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"}})
    api.payment_intents.update(intent_id, params={"payment_method": method.id})
    api.payment_intents.confirm(intent_id)


async def until(fetch: Any, done: Any) -> Any:
    """Poll ``fetch()`` every 50 ms until ``done(value)`` (a 404 means not yet), 120 s."""
    async with asyncio.timeout(120):
        while True:
            try:
                value = await fetch()
                if done(value):
                    return value
            except ApiError as exc:
                if exc.status != 404:
                    raise
            await asyncio.sleep(0.05)


async def main() -> None:
    tag = uuid.uuid4().hex[:6]
    total: list[float] = []
    webhook: list[float] = []
    with rabbitmq_vhost() as amqp, platform_process(Path(tempfile.mkdtemp()), amqp,
                                                    "--only", ONLY) as platform:
        async with Gateway(platform.gateway_url) as gateway:
            admin = await gateway.login(platform.admin_email, platform.admin_password)
            doctors = await setup(gateway, admin, tag)
            day = (datetime.now(UTC) + timedelta(days=3)).replace(hour=0, minute=0, second=0,
                                                                   microsecond=0)
            slots = {d: [s["start"] for s in await until(
                lambda d=d: admin.free_slots(d, day, day + timedelta(hours=12)), bool)]
                for d in doctors}
            patients = []
            for n in range(PATIENTS):
                email = f"bench-pay-{tag}-{n}@example.org"
                await gateway.register_patient(email, PASSWORD, f"Patient {n}", "+4915112340001")
                patients.append(await gateway.login(email, PASSWORD))

            async def checkout(c: int, session: Session) -> None:
                doctor = doctors[c % DOCTORS]
                began = time.perf_counter()
                held = await session.book(doctor, slots[doctor][c // DOCTORS], mode="online")
                opened = await until(lambda: session.call(
                    "GET", f"/api/v1/payments/checkout/{held['id']}"), bool)
                await asyncio.to_thread(pay, platform.stripe_url, opened["client_secret"])
                paid = time.perf_counter()
                await until(lambda: session.call("GET", f"/api/v1/appointments/{held['id']}"),
                            lambda a: a["status"] == "confirmed")
                total.append((time.perf_counter() - began) * 1000)
                webhook.append((time.perf_counter() - paid) * 1000)

            await asyncio.gather(*(checkout(c, s) for c, s in enumerate(patients)))
    report(f"checkout to confirmed through the gateway: {PATIENTS} concurrent patients", [
        ("booking → confirmed p50 / p99",
         f"{percentile(total, 50):.0f} / {percentile(total, 99):.0f} ms"),
        ("card confirmed → appointment confirmed p50 / p99",
         f"{percentile(webhook, 50):.0f} / {percentile(webhook, 99):.0f} ms "
         "(includes localstripe's fixed 1 s webhook delay)"),
    ])


if __name__ == "__main__":
    asyncio.run(main())
