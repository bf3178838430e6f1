"""Issue 17: contact details arrive sealed under the person key and are opened with the
key auth serves; ``user.erased`` deletes every clear copy; a sealed value whose key is
gone leaves nothing personal behind."""

from __future__ import annotations

import uuid
from datetime import timedelta

import bson

from healthflow.devkit.testing import eventually
from healthflow.notification import store

from ..conftest import PERSON_KEYS, Notif, appointment, event, user_registered
from .test_confirmations import START, directory

NAME = "Ingrid Quillfeather"


async def raw_text(notif: Notif) -> bytes:
    """Every document of every collection of the service's database, as BSON."""
    chunks = []
    for name in await notif.db.list_collection_names():
        chunks += [bson.encode(doc) async for doc in notif.db[name].find({})]
    return b"".join(chunks)


def erased(user_id: str) -> object:
    return event("user.erased", {"user_id": user_id, "erased_by": "admin-1"}, subject=user_id)


async def test_contact_details_are_opened_and_erased_everywhere(notif: Notif) -> None:
    user_id = f"pat-{uuid.uuid4().hex[:8]}"
    email, phone = f"{user_id}@patients.test", "+4915100000077"
    await directory(notif)
    await notif.deliver(user_registered(user_id, email=email, phone=phone, name=NAME))
    contact = await store.get(notif.db, store.CONTACTS, user_id)
    assert contact is not None
    assert (contact["email"], contact["phone"], contact["full_name"]) == (email, phone, NAME)
    await notif.deliver(appointment("appointment.booked", f"appt-{user_id}", user_id, START))
    await eventually(lambda: len(notif.smtp.to(email)) >= 2, message="no mail sent")
    await notif.settle()
    before = await raw_text(notif)
    assert email.encode() in before and NAME.encode() in before  # what erasure must remove

    PERSON_KEYS.erase(user_id)
    await notif.deliver(erased(user_id))
    after = await raw_text(notif)
    for value in (email, phone, NAME):
        assert value.encode() not in after, value
    contact = await store.get(notif.db, store.CONTACTS, user_id)
    assert contact is not None and contact["active"] is False and contact["erased_at"]
    # nothing more is sent to the erased person
    sent = len(notif.smtp.to(email))
    await notif.deliver(appointment(
        "appointment.cancelled", f"appt-{user_id}", user_id, START, status="cancelled",
        when=notif.clock.now() + timedelta(seconds=2), cancelled_by="doc-user-1",
        cancelled_by_role="doctor", reason_code="practitioner_unavailable"))
    await notif.settle()
    assert len(notif.smtp.to(email)) == sent


async def test_a_registration_whose_key_is_gone_keeps_nothing(notif: Notif) -> None:
    user_id = f"pat-{uuid.uuid4().hex[:8]}"
    registered = user_registered(user_id, email=f"{user_id}@patients.test", name=NAME)
    PERSON_KEYS.erase(user_id)  # erased before the event was consumed (a late redelivery)
    await notif.deliver(registered)
    assert await store.get(notif.db, store.CONTACTS, user_id) is None
    assert f"{user_id}@patients.test".encode() not in await raw_text(notif)
    assert await notif.db[store.DELIVERIES].count_documents({"user_id": user_id}) == 0
