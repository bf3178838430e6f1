"""Issue 17: erasing a patient leaves no e-mail address, phone number or name of theirs
anywhere: a patient registers, books, is e-mailed and texted, and edits their chart;
an admin erases them; then every collection of every database on the platform's
MongoDB-protocol server (raw BSON) and every message left in any of its RabbitMQ
queues (dead letters, retries) is searched for the three values: zero hits (but in
the server's replication log, :data:`REPLICATION_LOG`), and the audit chain, which
still holds their (sealed) events, verifies.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aio_pika
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient

from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import (
    BERLIN,
    PASSWORD,
    User,
    assert_chain_ok,
    audit_events,
    create_doctor,
    login,
    mail_to,
    new_email,
    new_phone,
    ok,
    publish_availability,
    register_hospital,
    wait_for_mail,
    weekly_hours,
)

TZ = ZoneInfo(BERLIN)
EVENTS = "healthflow.events"
REPLICATION_LOG = "local.oplog.rs:"
"""The server's own replication log (capped: SecantusDB keeps the newest 100 000 writes,
MongoDB the configured oplog window) holds every write, so the clear values the services
held before the erasure stay there until it rolls over. It is no service's database and
nothing can rewrite it; every other collection of every database must be clean."""


def needles(email: str, phone: str, name: str) -> dict[str, bytes]:
    """What must not be found (lower-cased, matched against lower-cased text)."""
    return {"email": email.lower().encode(), "phone": phone.encode(),
            "phone digits": phone.lstrip("+").encode(), "name": name.lower().encode()}


async def database_hits(platform: RunningPlatform, values: dict[str, bytes]) -> list[str]:
    """``database.collection: what`` for each value found in any document of any
    collection of any database on the server (raw BSON, lower-cased)."""
    hits = []
    client: AsyncMongoClient[RawBSONDocument] = AsyncMongoClient(
        platform.mongodb_url, document_class=RawBSONDocument)
    try:
        for db_name in await client.list_database_names():
            db = client[db_name]
            for name in await db.list_collection_names():
                async for doc in db[name].find({}):
                    raw = bytes(doc.raw).lower()
                    hits += [f"{db_name}.{name}: {what}" for what, value in values.items()
                             if value in raw]
    finally:
        await client.close()
    return sorted(set(hits))


async def queue_hits(platform: RunningPlatform, rabbitmqctl: Callable[..., Any],
                     values: dict[str, bytes]) -> tuple[list[str], int]:
    """``queue: what`` for each value found in a message waiting in any queue of the
    platform's virtual host (read unacknowledged and handed back), and how many
    messages were read."""
    vhost = platform.amqp_url.rsplit("/", 1)[1]
    listed: subprocess.CompletedProcess[str] = rabbitmqctl(
        "list_queues", "-p", vhost, "name", "messages_ready", "--formatter", "json")
    queues = [q["name"] for q in json.loads(listed.stdout or "[]") if q["messages_ready"]]
    hits, read = [], 0
    connection = await aio_pika.connect(platform.amqp_url)
    try:
        for queue_name in queues:
            channel = await connection.channel()
            queue = await channel.get_queue(queue_name, ensure=False)
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                read += 1
                raw = (message.body + json.dumps(message.headers, default=str).encode()).lower()
                hits += [f"{queue_name}: {what}" for what, value in values.items()
                         if value in raw]
            await channel.close()  # unacknowledged: every message goes back
    finally:
        await connection.close()
    return sorted(set(hits)), read


async def book(api: Any, patient: User, doctor: User) -> dict[str, Any]:
    day = datetime.now(TZ).date() + timedelta(days=9)
    while day.isoweekday() != 2:
        day += timedelta(days=1)
    slot = datetime(day.year, day.month, day.day, 9, 30, tzinfo=TZ)
    body = {"doctor_id": doctor.id, "start": slot.isoformat(), "mode": "in_person"}

    booked: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal booked
        response = await api.post("/api/v1/appointments", headers=patient.headers, json=body)
        if response.status_code in (404, 409, 422):  # the slot is not offered yet
            return False
        booked = ok(response, 201)
        return True

    await eventually(done, within=30, interval=0.5, message="the slot was never bookable")
    return booked


async def test_an_erased_patient_is_found_in_no_database_and_no_queue(
        platform: RunningPlatform, admin: User, compliance: User,
        rabbitmqctl: Callable[..., Any]) -> None:
    async with platform.client() as api:
        hospital = await register_hospital(api, admin, f"Erasure Klinik {uuid.uuid4().hex[:6]}",
                                           departments=["Cardiology"])
        doctor, _ = await create_doctor(
            api, admin, family=f"Vergessen{uuid.uuid4().hex[:5]}",
            affiliations=[{"hospital_id": hospital["id"],
                           "department_id": hospital["departments"]["Cardiology"]}])
        await publish_availability(api, doctor, weekly_hours(hospital["id"]))

        tag = uuid.uuid4().hex[:8]
        # a queue holding every event of the journey unconsumed, as a dead-letter queue or
        # an archive would: what it keeps must be unreadable after the erasure too
        tap_connection = await aio_pika.connect(platform.amqp_url)
        tap_channel = await tap_connection.channel()
        tap = await tap_channel.declare_queue(f"test.erasure-tap.{tag}", durable=True)
        await tap.bind(await tap_channel.get_exchange(EVENTS, ensure=False), routing_key="#")
        try:
            await journey(api, platform, admin, compliance, doctor, tag, rabbitmqctl)
        finally:
            await tap.delete(if_unused=False, if_empty=False)
            await tap_connection.close()


async def journey(api: Any, platform: RunningPlatform, admin: User, compliance: User,
                  doctor: User, tag: str, rabbitmqctl: Callable[..., Any]) -> None:
    """A patient with values found nowhere else registers, edits their chart, books and is
    e-mailed; an admin erases them; every database and queue is searched."""
    email, phone, name = new_email(f"erase-{tag}"), new_phone(), f"Philippa Quillon{tag}"
    created = ok(await api.post("/api/v1/auth/register", json={
        "email": email, "password": PASSWORD, "full_name": name, "phone": phone}), 201)
    tokens = await login(api, email)
    patient = User(created["id"], email, ["patient"], tokens["access_token"],
                   tokens["refresh_token"])
    await wait_for_mail(platform, email, "Welcome to HealthFlow - please confirm your email")
    chart = {"birth_date": "1984-02-29", "consents": {"email": True, "sms": True},
             "emergency_contacts": [{"name": f"Rupert Quillon{tag}",
                                     "relationship": "brother", "phone": new_phone()}]}

    async def chart_edited() -> bool:  # once user.registered reached the patient service
        response = await api.patch("/api/v1/patients/me", headers=patient.headers, json=chart)
        return response.status_code == 200

    await eventually(chart_edited, within=30, interval=0.3,
                     message="the patient's chart never became editable")
    await book(api, patient, doctor)
    await eventually(lambda: _mails_at_least(platform, email, 2), within=60,
                     message="the booking was never e-mailed")

    values = needles(email, phone, name)
    # the scanner finds what is there (the clear copies the services keep)...
    before = await database_hits(platform, values)
    assert any(h.startswith("healthflow_notification.contacts") for h in before), before
    # ...and nothing clear travels: the audit log keeps the sealed registration only
    audited = json.dumps(await audit_events(api, compliance, subject=patient.id,
                                            type="user.registered"))
    assert patient.id in audited and email not in audited and name not in audited, audited

    erased = ok(await api.post(f"/api/v1/users/{patient.id}/erasure", headers=admin.headers))
    assert erased["email"] == "" and erased["status"] == "inactive", erased
    refused = await api.get("/api/v1/patients/me", headers=patient.headers)
    assert refused.status_code == 401, refused.text
    await search_everything(platform, rabbitmqctl, values)

    erasures = await audit_events(api, compliance, subject=patient.id, type="user.erased")
    assert [e["envelope"]["data"] for e in erasures] == [
        {"user_id": patient.id, "erased_by": admin.id}], erasures
    await assert_chain_ok(api, compliance)


async def search_everything(platform: RunningPlatform, rabbitmqctl: Callable[..., Any],
                            values: dict[str, bytes]) -> None:
    """No database (but the replication log) and no queued message holds ``values``, once
    every service has applied ``user.erased``."""
    remaining: list[str] = []
    oplog: list[str] = []

    async def forgotten() -> bool:
        nonlocal remaining, oplog
        found = await database_hits(platform, values)
        oplog = [h for h in found if h.startswith(REPLICATION_LOG)]
        remaining = [h for h in found if not h.startswith(REPLICATION_LOG)]
        return not remaining

    try:
        await eventually(forgotten, within=60, interval=1.0)
    except AssertionError:
        raise AssertionError(f"still found after erasure: {remaining}") from None
    in_queues, read = await queue_hits(platform, rabbitmqctl, values)
    assert in_queues == [], in_queues
    assert read >= 5, f"the tap queue held only {read} messages of the journey"
    print(f"\n[erasure] every collection clean but the server's replication log "
          f"({', '.join(oplog) or 'nothing'}); {read} queued messages read, none personal")


async def _mails_at_least(platform: RunningPlatform, address: str, count: int) -> bool:
    return len(await mail_to(platform, address)) >= count
