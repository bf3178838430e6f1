"""Fixtures of the notification tests: real SMTP, Twilio-like and Web Push endpoints on
loopback, a settable clock, and a running app on a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.events.envelope import CloudEvent
from healthflow.common.keywrap import new_kek
from healthflow.common.mongo import Document
from healthflow.common.service import ServiceRuntime
from healthflow.devkit.personkeys import PersonKeyStandIn
from healthflow.devkit.sandbox import PushSink, SmtpSink, TwilioSink
from healthflow.devkit.testing import TokenFactory, eventually, running_app, source_of
from healthflow.notification.app import WORKERS, create_app
from healthflow.notification.dispatch import Dispatcher, ReminderScheduler
from healthflow.notification.domain import SettableClock
from healthflow.notification.settings import Settings

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday, 13:00 in Berlin (CET, UTC+1)
ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "test-twilio-auth-token"


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioSink]:
    sink = await TwilioSink(ACCOUNT_SID, AUTH_TOKEN).start()
    try:
        yield sink
    finally:
        await sink.stop()


@pytest.fixture
async def push_sink() -> AsyncIterator[PushSink]:
    sink = await PushSink().start()
    try:
        yield sink
    finally:
        await sink.stop()


PERSON_KEYS = PersonKeyStandIn()
"""Auth's person keys for the whole session: :func:`user_registered` seals under them."""


@pytest.fixture(scope="session")
async def person_keys() -> AsyncIterator[PersonKeyStandIn]:
    async with PERSON_KEYS:
        yield PERSON_KEYS


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(NOW)


@pytest.fixture
def settings(mongodb_url: str, unique_name: str, smtp: SmtpSink,
             twilio: TwilioSink, person_keys: PersonKeyStandIn) -> Settings:
    return Settings(
        person_keys_url=person_keys.url,
        mongodb_url=mongodb_url, mongodb_database=f"notification_{unique_name}",
        transport="inprocess", retry_delays=[0.05, 0.1],
        smtp_port=smtp.port, smtp_timeout=2.0,
        twilio_base_url=twilio.base_url, twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=SecretStr(AUTH_TOKEN), twilio_timeout=2.0,
        twilio_status_callback_url="https://gateway.test/api/v1/notifications/twilio/status",
        default_quiet_hours="", dispatch_interval=0.2, reminder_interval=3600.0,
        retry_base=30.0, max_attempts=4, push_timeout=2.0,
        # the loopback push sink of healthflow.devkit.sandbox
        push_allowed_hosts=["127.0.0.1"], push_allow_insecure_sink=True,
        # like the platform runner's generated KEK (healthflow.common.keywrap)
        key_encryption_keys=SecretStr(f"test-kek:{new_kek()}"),
        # most tests are about other rules; test_email_verification and
        # test_phone_verification turn them on
        require_verified_email=False, require_verified_phone=False,
    )


def event(type_: str, data: dict[str, Any], *, when: datetime | None = None,
          subject: str | None = None, id_: str | None = None) -> CloudEvent:
    """A CloudEvent as the publishing service sends it."""
    fields: dict[str, Any] = {"source": source_of(type_), "type": type_, "data": data,
                              "subject": subject, "time": when or datetime.now(UTC)}
    if id_ is not None:
        fields["id"] = id_
    return CloudEvent(**fields)


def user_registered(user_id: str, *, email: str | None = None, phone: str | None = "+4915112345678",
                    name: str = "Eve Example") -> CloudEvent:
    """``user.registered`` as auth publishes it: the values sealed under the person key
    :data:`PERSON_KEYS` serves."""
    return event("user.registered", PERSON_KEYS.registered(
        user_id, email=email or f"{user_id}@patients.test", full_name=name, phone=phone,
        roles=["patient"]), subject=user_id)


def appointment(type_: str, appointment_id: str, patient_id: str, start: datetime, *,
                tz: str = "Europe/Berlin", when: datetime | None = None,
                **extra: Any) -> CloudEvent:
    """An ``appointment.*`` event shaped like healthflow.appointment.events payloads."""
    data: dict[str, Any] = {
        "appointment_id": appointment_id, "patient_id": patient_id, "doctor_id": "doc-1",
        "doctor_user_id": "doc-user-1", "location_id": "hosp-1",
        "start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat(),
        "timezone": tz, "mode": "in_person", "status": "booked",
    }
    if type_ == "appointment.booked":
        data |= {"booked_by": patient_id, "booked_by_role": "patient"}
    data |= extra
    return event(type_, data, when=when, subject=appointment_id)


@dataclass
class Notif:
    """A running notification app, its client, clock and the loopback providers."""

    app: FastAPI
    client: httpx.AsyncClient
    tokens: TokenFactory
    clock: SettableClock
    smtp: SmtpSink
    twilio: TwilioSink

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    @property
    def db(self) -> AsyncDatabase[Document]:
        return self.runtime.db

    @property
    def dispatcher(self) -> Dispatcher:
        dispatcher: Dispatcher = self.runtime.state["dispatcher"]
        return dispatcher

    @property
    def scheduler(self) -> ReminderScheduler:
        scheduler: ReminderScheduler = self.runtime.state["scheduler"]
        return scheduler

    async def stop_background(self) -> None:
        """Stop the dispatch and reminder loops: the test drives sending and the clock."""
        for name in WORKERS:
            await self.runtime.worker(name).stop()

    async def deliver(self, *events: CloudEvent) -> None:
        """Hand ``events`` to the consumer one after the other, as the transport does."""
        consumer = self.runtime.consumer
        assert consumer is not None
        for item in events:
            await consumer(item)

    async def deliveries(self, **where: Any) -> list[Document]:
        return [d async for d in self.db["deliveries"].find(where).sort("created_at", 1)]

    async def settle(self) -> None:
        """Run the dispatcher until no delivery due at the clock's now is still queued.

        A delivery the background loop is sending counts as queued until its outcome is
        recorded, so this also waits for those (the loop runs beside the test).
        """

        async def idle() -> bool:
            await self.dispatcher.run_due()
            return await self.db["deliveries"].count_documents(
                {"status": "queued", "next_attempt_at": {"$lte": self.clock.now()}}) == 0

        await eventually(idle, within=15, message="queued deliveries were not processed")

    def headers(self, user_id: str, roles: tuple[str, ...] = ("patient",)) -> dict[str, str]:
        return self.tokens.headers(user_id, roles)


@pytest.fixture
async def notif(settings: Settings, tokens: TokenFactory, clock: SettableClock,
                smtp: SmtpSink, twilio: TwilioSink) -> AsyncIterator[Notif]:
    app = create_app(settings, clock=clock)
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        yield Notif(app, client, tokens, clock, smtp, twilio)
