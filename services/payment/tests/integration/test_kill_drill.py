"""Kill drill (issue 15): the payment service SIGKILLed between Stripe's success and its
own record is recovered on restart, the patient charged once and ``payment.succeeded``
published once.

The service runs as a real process (``python -m healthflow.payment``) on the real
MongoDB-protocol server, beside its own localstripe child. localstripe delivers the
``payment_intent.succeeded`` webhook to a tripwire in this test, which SIGKILLs the
service as the delivery arrives and drops the connection: Stripe has taken the money,
the service never recorded it, and the delivery failed (localstripe does not retry).
The restarted service's reconciliation pass (:mod:`healthflow.payment.reconcile`) must
then record the success once; the captured webhook replayed afterwards changes nothing.

Bounded (two service starts, one localstripe): it restarts nothing machine-wide, so it
runs in the normal suite like the jobs' kill drill. That the appointment service turns
``payment.succeeded`` into a confirmed appointment is its own tested handler.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from healthflow.common.events.outbox import recorded_events
from healthflow.contracts.appointment import AppointmentBooked
from healthflow.devkit.embedded import EmbeddedStripe, free_port, stop_child
from healthflow.devkit.testing import eventually, running_app
from healthflow.payment import service
from healthflow.payment.app import create_app
from healthflow.payment.settings import Settings


@pytest.fixture
def own_stripe(tmp_path: Path) -> Iterator[EmbeddedStripe]:
    """A localstripe of this drill only (its webhook endpoint is the tripwire)."""
    server = EmbeddedStripe(log_file=tmp_path / "localstripe.log").start()
    try:
        yield server
    finally:
        server.stop()


class Tripwire:
    """An HTTP endpoint that, on a ``payment_intent.succeeded`` delivery, SIGKILLs the
    payment process and drops the connection (keeping the body and signature)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.victim: subprocess.Popen[bytes] | None = None
        self.captured: tuple[bytes, str] | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:]
                       if ": " in line)
        lowered = {k.lower(): v for k, v in headers.items()}
        body = await reader.readexactly(int(lowered.get("content-length", "0")))
        if b'"payment_intent.succeeded"' in body and self.victim is not None:
            self.victim.send_signal(signal.SIGKILL)  # before anything is recorded
            self.captured = (body, lowered["stripe-signature"])
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def serve(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, "127.0.0.1", self.port)


@pytest.fixture
async def tripwire() -> AsyncIterator[Tripwire]:
    wire = Tripwire()
    server = await wire.serve()
    try:
        yield wire
    finally:
        server.close()


def service_env(mongodb_url: str, database: str, stripe_server: EmbeddedStripe,
                s3_env: dict[str, str], port: int) -> dict[str, str]:
    return {**os.environ, **stripe_server.env(), **s3_env,
            "PAYMENT_PORT": str(port), "PAYMENT_MONGODB_URL": mongodb_url,
            "PAYMENT_MONGODB_DATABASE": database, "PAYMENT_TRANSPORT": "inprocess",
            "PAYMENT_S3_BUCKET": f"pay-{database.lower().replace('_', '-')}",
            "PAYMENT_RECONCILE_INTERVAL_SECONDS": "0.5"}


def spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:  # the child has its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "healthflow.payment"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


async def start_service(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m healthflow.payment``, once its ``/readyz`` answers 200."""
    process = await asyncio.to_thread(spawn, env, log)
    url = f"http://127.0.0.1:{env['PAYMENT_PORT']}/readyz"

    async def ready() -> bool:
        assert process.poll() is None, f"the payment service exited: see {log}"
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(url)).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(ready, within=60, interval=0.2, message="the service never got ready")
    return process


def booking() -> AppointmentBooked:
    start = datetime.now(UTC) + timedelta(days=3)
    return AppointmentBooked(
        appointment_id=str(uuid.uuid4()), patient_id="patient-1", doctor_id="doc-1",
        doctor_user_id="user-doc-1", location_id=None, start=start,
        end=start + timedelta(minutes=30), timezone="Europe/Berlin", mode="online",
        status="pending_payment", booked_by="patient-1", booked_by_role="patient",
        fee_amount=4000, fee_currency="EUR")


async def open_checkout(settings: Settings, event: AppointmentBooked) -> None:
    """The ``appointment.booked`` handler's effect, run in-process on the same database."""
    app = create_app(settings)
    async with running_app(app):
        runtime = app.state.runtime
        await runtime.transact(lambda uow: service.open_checkout(
            uow, service.provider(runtime), event, timedelta(minutes=15)))


def stripe_api(server: EmbeddedStripe) -> Any:
    warnings.simplefilter("ignore", DeprecationWarning)
    return stripe.StripeClient(server.api_key, base_addresses={"api": server.url}).v1


def pay(server: EmbeddedStripe, intent_id: str) -> str:
    """The patient's app confirms the PaymentIntent with a good test card."""
    api = stripe_api(server)
    method = api.payment_methods.create(params={"type": "card", "card": {
        "number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"}})
    api.payment_intents.update(intent_id, params={"payment_method": method.id})
    return str(api.payment_intents.confirm(intent_id).status)


def charges_of(server: EmbeddedStripe, intent_id: str) -> list[Any]:
    listed = stripe_api(server).charges.list(params={"limit": 100})
    return [c for c in listed.data if c.payment_intent == intent_id]


async def test_the_service_killed_between_stripes_success_and_its_record_charges_once(
        mongodb_url: str, unique_name: str, s3_env: dict[str, str],
        own_stripe: EmbeddedStripe, tripwire: Tripwire, tmp_path: Path) -> None:
    database = f"payment_{unique_name}"
    port = free_port()
    env = service_env(mongodb_url, database, own_stripe, s3_env, port)
    settings = Settings(mongodb_url=mongodb_url, mongodb_database=database,
                        transport="inprocess", stripe_api_base=own_stripe.url,
                        stripe_webhook_secret=own_stripe.webhook_secret,
                        s3_endpoint_url=s3_env["S3_ENDPOINT_URL"],
                        s3_access_key=s3_env["S3_ACCESS_KEY"],
                        s3_secret_key=s3_env["S3_SECRET_KEY"], s3_region=s3_env["S3_REGION"],
                        s3_bucket=env["PAYMENT_S3_BUCKET"], reconcile_interval_seconds=3600)
    event = booking()
    await open_checkout(settings, event)
    await asyncio.to_thread(own_stripe.send_webhooks_to,
                            f"http://127.0.0.1:{tripwire.port}/stripe")
    # the first life never reconciles (its webhook is the only way it could learn)
    first = await start_service({**env, "PAYMENT_RECONCILE_INTERVAL_SECONDS": "3600"},
                                tmp_path / "payment-1.log")
    tripwire.victim = first
    second: subprocess.Popen[bytes] | None = None
    app = create_app(settings)
    try:
        async with running_app(app):
            db = app.state.runtime.db
            doc = await db["payments"].find_one({"appointment_id": event.appointment_id})
            assert await asyncio.to_thread(pay, own_stripe, doc["intent_id"]) == "succeeded"
            await asyncio.wait_for(asyncio.to_thread(first.wait), timeout=30)
            assert first.returncode == -signal.SIGKILL and tripwire.captured is not None
            # Stripe has the money; the dead service recorded nothing.
            assert (await db["payments"].find_one({"_id": doc["_id"]}))["status"] == \
                "requires_payment"
            assert await db["webhook_events"].count_documents({}) == 0

            second = await start_service(env, tmp_path / "payment-2.log")

            async def recorded() -> bool:
                now = await db["payments"].find_one({"_id": doc["_id"]})
                return bool(now["status"] == "succeeded")

            await eventually(recorded, within=30, interval=0.2,
                             message="the restarted service never reconciled the payment")
            body, signature = tripwire.captured
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                late = await http.post("/api/v1/payments/webhooks/stripe", content=body,
                                       headers={"Stripe-Signature": signature,
                                                "Content-Type": "application/json"})
            assert late.status_code == 200 and late.json()["outcome"] == "ignored"
            paid = await db["payments"].find_one({"_id": doc["_id"]})
            assert "reconciled_at" in paid
            published = await recorded_events(db, {"type": "payment.succeeded"})
            assert [e.data["payment_id"] for e in published] == [doc["_id"]]
            charges = await asyncio.to_thread(charges_of, own_stripe, doc["intent_id"])
            assert [(c.status, c.amount) for c in charges] == [("succeeded", 4000)]
    finally:
        stop_child(first, 10.0)
        stop_child(second, 10.0)
