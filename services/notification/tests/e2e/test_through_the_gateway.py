"""A booking through the gateway reaches the patient by SMS and email.

The whole platform runs as in production (``healthflow-run --multi-process``: every
service and the gateway as their own processes over RabbitMQ on a virtual host of
this module's own), with the notification service pointed at a real SMTP server
(aiosmtpd) and a Twilio-compatible endpoint running in this test process. Everything
is done the way the apps do it, through the gateway: an admin registers and
verifies a hospital and a doctor, the doctor publishes hours, a patient registers,
books, moves and cancels.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest

from healthflow.client.people import pick_site
from healthflow.devkit.sandbox import SmtpSink, TwilioSink
from healthflow.devkit.testing import (
    RunningPlatform,
    eventually,
    platform_process,
    rabbitmq_vhost,
)
from healthflow.notification.domain import format_local

BERLIN = ZoneInfo("Europe/Berlin")
PASSWORD = "Amber-Kestrel-Orchard-2291"
ACCOUNT_SID, AUTH_TOKEN = "AC" + "e" * 32, "e2e-twilio-token"


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture(scope="module")
async def twilio_endpoint() -> AsyncIterator[TwilioSink]:
    sink = await TwilioSink(ACCOUNT_SID, AUTH_TOKEN).start()
    try:
        yield sink
    finally:
        await sink.stop()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, smtp_server: SmtpSink,
             twilio_endpoint: TwilioSink) -> Iterator[RunningPlatform]:
    env = {
        "NOTIFICATION_SMTP_PORT": str(smtp_server.port),
        "NOTIFICATION_TWILIO_BASE_URL": twilio_endpoint.base_url,
        "NOTIFICATION_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "NOTIFICATION_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "NOTIFICATION_DEFAULT_QUIET_HOURS": "",  # the run may fall in anyone's night
    }
    with rabbitmq_vhost() as amqp_url, platform_process(
            tmp_path_factory.mktemp("notification-e2e"), amqp_url, env=env) as running:
        yield running


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: {response.status_code} "
        f"{response.text[:600]}")
    return response.json() if response.content else None


async def login(api: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    tokens = ok(await api.post("/api/v1/auth/token",
                               data={"username": email, "password": password}))
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def account(api: httpx.AsyncClient, admin: dict[str, str] | None, label: str,
                  phone: str, roles: list[str] | None = None) -> tuple[str, str, dict[str, str]]:
    """A self-registered patient (``admin`` None) or a staff account; (id, email, headers)."""
    email = f"{label}.{uuid.uuid4().hex[:10]}@example.org"
    body = {"email": email, "password": PASSWORD, "full_name": f"{label.title()} Example",
            "phone": phone}
    if admin is None:
        created = ok(await api.post("/api/v1/auth/register", json=body), 201)
    else:
        created = ok(await api.post("/api/v1/users", headers=admin,
                                    json=body | {"roles": roles}), 201)
    return created["id"], email, await login(api, email, PASSWORD)


def next_monday() -> date:
    day = datetime.now(BERLIN).date() + timedelta(days=7)
    while day.isoweekday() != 1:
        day += timedelta(days=1)
    return day


@dataclass(frozen=True)
class Clinic:
    """A verified hospital with one verified doctor who has published hours."""

    name: str
    hospital_id: str
    doctor_id: str
    family: str  # the doctor's family name


async def clinic(api: httpx.AsyncClient, admin: dict[str, str], *, zone: str, city: str,
                 country: str, weekly: Callable[[str], list[dict[str, Any]]],
                 slot_minutes: int = 30) -> Clinic:
    """Register and verify a hospital in ``zone`` and a doctor there, through the gateway,
    as the apps do; the doctor publishes ``weekly(hospital_id)``."""
    name = f"Klinik {uuid.uuid4().hex[:6]}"
    hospital = ok(await api.post("/api/v1/hospitals", headers=admin, json={
        "name": name, "time_zone": zone, "services": ["cardiology"],
        "address": {"lines": ["Charitéplatz 1"], "city": city,
                    "postal_code": "10117", "country": country}}), 201)
    ok(await api.post(f"/api/v1/hospitals/{hospital['id']}/verify", headers=admin))
    doctor_id, _, doctor = await account(api, admin, "dr-notify",
                                         f"+447400{uuid.uuid4().int % 1_000_000:06d}",
                                         ["doctor"])
    family = f"Herz{uuid.uuid4().hex[:4]}"

    async def profile_registered() -> bool:
        response = await api.post("/api/v1/doctors", headers=doctor, json={
            "name": {"prefix": "Dr.", "given": ["Alex"], "family": family},
            "licence": {"number": f"LIC-{uuid.uuid4().hex[:8]}",
                        "issuer": f"Ärztekammer {city}", "country": country},
            "qualifications": [{"code": "MD", "issuer": "Charité", "year": 2010}],
            "specialties": ["cardiology"], "languages": ["de", "en"],
            "affiliations": [{"hospital_id": hospital["id"]}], "modes": ["in_person"],
            "fee": {"amount": 6000, "currency": "EUR"}, "time_zone": zone})
        if response.status_code == 422 and "unknown" in response.text:
            return False  # the hospital has not reached the doctor service yet
        ok(response, 201)
        return True

    await eventually(profile_registered, within=30, interval=0.2,
                     message="the doctor service never learned of the hospital")
    ok(await api.post(f"/api/v1/doctors/{doctor_id}/verify", headers=admin))
    ok(await api.put(f"/api/v1/doctors/{doctor_id}/availability", headers=doctor, json={
        "slot_minutes": slot_minutes, "leave": [], "weekly": weekly(hospital["id"])}))
    return Clinic(name, hospital["id"], doctor_id, family)


async def bookable(api: httpx.AsyncClient, headers: dict[str, str], doctor_id: str,
                   start: datetime) -> None:
    """Wait until the slot at ``start`` is offered (the schedule event reached the
    appointment service)."""
    async def offered() -> bool:
        response = await api.get("/api/v1/slots", headers=headers, params={
            "doctor_id": doctor_id, "from": start.isoformat(),
            "to": (start + timedelta(hours=1)).isoformat()})
        return response.status_code == 200 and any(
            datetime.fromisoformat(s["start"]) == start for s in response.json()["items"])

    await eventually(offered, within=30, message="the doctor's slots never appeared")


@dataclass(frozen=True)
class DueSoon:
    """A booking whose one-hour reminder falls due while this module's tests run."""

    email: str
    phone: str
    patient_id: str
    start: datetime  # aware UTC
    zone: ZoneInfo

    @property
    def due(self) -> datetime:
        return self.start - timedelta(hours=1)  # the platform's default 60-minute offset


@pytest.fixture(scope="module")
async def reminder_due_soon(platform: RunningPlatform) -> DueSoon:
    """Book the first slot more than an hour and 20 s ahead, so that its one-hour reminder
    (the platform's default offsets, nothing shortened) falls due 20 s to 5 min later.

    The hospital is where it is late morning now (the demo's site choice), so the
    reminder is outside quiet hours and its hour of hours lies far from midnight and
    from any daylight-saving change; the doctor's hours start at that slot (hours lie
    on a 5-minute grid). The first test asks for this fixture, so the wait overlaps it.
    """
    site = pick_site()
    zone = ZoneInfo(site.zone)
    earliest = datetime.now(UTC) + timedelta(hours=1, seconds=20)
    start = earliest.replace(second=0, microsecond=0) + timedelta(
        minutes=5 - earliest.minute % 5)
    local = start.astimezone(zone)
    opens = local.strftime("%H:%M")
    closes = (local + timedelta(hours=1)).strftime("%H:%M")
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()]
    async with platform.client() as api:
        admin = await login(api, platform.admin_email, platform.admin_password)
        where = await clinic(api, admin, zone=site.zone, city=site.city, country=site.country,
                             slot_minutes=5, weekly=lambda hospital_id: [
                                 {"location": f"hospital:{hospital_id}", "day": day,
                                  "start": opens, "end": closes, "breaks": []}])
        phone = f"+447401{uuid.uuid4().int % 1_000_000:06d}"
        patient_id, email, patient = await account(api, None, "reminded", phone)
        await bookable(api, patient, where.doctor_id, start)
        booked = ok(await api.post("/api/v1/appointments", headers=patient, json={
            "doctor_id": where.doctor_id, "start": start.isoformat(), "mode": "in_person"}), 201)
        assert datetime.fromisoformat(booked["start"]) == start
    return DueSoon(email, phone, patient_id, start, zone)


async def test_a_booking_through_the_gateway_is_confirmed_by_sms_and_email(
        platform: RunningPlatform, smtp_server: SmtpSink, twilio_endpoint: TwilioSink,
        reminder_due_soon: DueSoon) -> None:
    # (reminder_due_soon: booked first, so that its reminder falls due while this runs)
    async with platform.client() as api:
        admin = await login(api, platform.admin_email, platform.admin_password)
        where = await clinic(api, admin, zone="Europe/Berlin", city="Berlin", country="DE",
                             weekly=lambda hospital_id: [
                                 {"location": f"hospital:{hospital_id}", "day": "mon",
                                  "start": "09:00", "end": "12:00", "breaks": []}])
        name, doctor_id, family = where.name, where.doctor_id, where.family

        phone = f"+447400{uuid.uuid4().int % 1_000_000:06d}"
        patient_id, email, patient = await account(api, None, "notified", phone)
        monday = next_monday()
        nine = datetime(monday.year, monday.month, monday.day, 9, tzinfo=BERLIN)

        # As a person would: book once the welcome mail is in. The notification service
        # has then (its queue is FIFO) also learned the doctor's name, published earlier.
        await eventually(lambda: any(m.message["Subject"].startswith("Welcome")
                                     for m in smtp_server.to(email)),
                         within=30, message="no welcome email after registering")
        await bookable(api, patient, doctor_id, nine)
        booked = ok(await api.post("/api/v1/appointments", headers=patient, json={
            "doctor_id": doctor_id, "start": nine.isoformat(), "mode": "in_person"}), 201)

        when = format_local(nine, BERLIN, "en")  # "Monday, … 09:00 CET" (or CEST)
        await eventually(lambda: any(when in m.body for m in twilio_endpoint.to(phone)),
                         within=30, message="no confirmation SMS after booking")
        await eventually(lambda: any(m.message["Subject"] == "Your appointment is booked"
                                     for m in smtp_server.to(email)),
                         within=30, message="no confirmation email after booking")
        [sms] = twilio_endpoint.to(phone)
        assert f"Dr. Alex {family}" in sms.body and f"{name}, Berlin" in sms.body
        assert "booked" in sms.body and sms.account_sid == ACCOUNT_SID
        mail = next(m for m in smtp_server.to(email)
                    if m.message["Subject"] == "Your appointment is booked")
        assert when in mail.part("text/plain") and when in mail.part("text/html")
        assert any(m.message["Subject"].startswith("Welcome") for m in smtp_server.to(email))

        eleven = nine + timedelta(hours=2)
        ok(await api.post(f"/api/v1/appointments/{booked['id']}/reschedule", headers=patient,
                          json={"start": eleven.isoformat()}))
        await eventually(lambda: any(format_local(eleven, BERLIN, "en") in m.body
                                     and "moved" in m.body for m in twilio_endpoint.to(phone)),
                         within=30, message="no SMS after the reschedule")
        ok(await api.post(f"/api/v1/appointments/{booked['id']}/cancel", headers=patient,
                          json={"reason_code": "patient_request"}))
        await eventually(lambda: any("cancelled" in m.body for m in twilio_endpoint.to(phone)),
                         within=30, message="no SMS after the cancellation")
        assert len(twilio_endpoint.to(phone)) == 3  # each event once

        # the patient's feed, and the delivery log for admins only
        feed = ok(await api.get("/api/v1/notifications/feed", headers=patient))
        assert {"appointment_booked", "appointment_rescheduled", "appointment_cancelled",
                "welcome"} <= {i["template"] for i in feed["items"]}
        ok(await api.get("/api/v1/notifications/deliveries", headers=patient), 403)

        async def logged() -> bool:
            page = ok(await api.get("/api/v1/notifications/deliveries", headers=admin,
                                    params={"user_id": patient_id, "channel": "sms"}))
            return sorted(d["status"] for d in page["items"]) == ["sent"] * 3

        await eventually(logged, within=30, message="the SMS deliveries were not logged sent")

        # a forged Twilio status callback is refused at the service (the edge lets it pass)
        forged = await api.post("/api/v1/notifications/twilio/status",
                                content=urlencode({"MessageSid": sms.sid,
                                                   "MessageStatus": "delivered"}),
                                headers={"Content-Type": "application/x-www-form-urlencoded",
                                         "X-Twilio-Signature": "bm90LWEtc2lnbmF0dXJl"})
        assert forged.status_code == 403
        assert forged.headers["content-type"].startswith("application/problem+json")


async def test_a_reminder_due_during_the_run_reaches_the_patient_by_email_and_sms_once(
        platform: RunningPlatform, smtp_server: SmtpSink, twilio_endpoint: TwilioSink,
        reminder_due_soon: DueSoon) -> None:
    """The real clock and the multi-process platform as ``make run`` starts it: the
    scheduler in the notification process fires the one-hour reminder it stored at
    booking, and the patient gets it once by email and once by SMS."""
    booking = reminder_due_soon
    subject = "Reminder: your appointment"
    when = format_local(booking.start, booking.zone, "en")

    def reminders() -> tuple[list[Any], list[Any]]:
        return ([m for m in smtp_server.to(booking.email) if m.message["Subject"] == subject],
                [m for m in twilio_endpoint.to(booking.phone) if "Reminder" in m.body])

    assert datetime.now(UTC) < booking.due + timedelta(seconds=5), "the test ran too late"
    wait = (booking.due - datetime.now(UTC)).total_seconds() + 60
    await eventually(lambda: all(reminders()), within=wait, interval=0.5,
                     message=f"no reminder email and SMS within a minute of {booking.due}")
    mails, texts = reminders()
    arrived = datetime.now(UTC)
    assert arrived >= booking.due  # not early
    assert when in texts[0].body and when in mails[0].part("text/plain")
    # A few more scheduler passes (every 5 s) and dispatcher passes: still exactly one each.
    await asyncio.sleep(12)
    mails, texts = reminders()
    assert len(mails) == 1 and len(texts) == 1

    async with platform.client() as api:
        admin = await login(api, platform.admin_email, platform.admin_password)
        page = ok(await api.get("/api/v1/notifications/deliveries", headers=admin,
                                params={"user_id": booking.patient_id}))
        reminded = sorted((d["channel"], d["status"]) for d in page["items"]
                          if d["template"] == "appointment_reminder")
        assert reminded == [("email", "sent"), ("sms", "sent")]
        # The scheduler's own health, as operators see it through the gateway.
        status = ok(await api.get("/api/v1/platform/status", headers=admin))
        scheduler = status["services"]["notification"]["readyz"]["body"]["checks"]["reminders"]
        assert scheduler["status"] == "ok" and scheduler["overdue"] == 0
        assert scheduler["last_pass_seconds_ago"] is not None
