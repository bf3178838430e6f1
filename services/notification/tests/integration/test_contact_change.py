"""Issue 16, account lifecycle: ``user.contact_changed`` (sealed like ``user.registered``)
replaces the contact's address and number (a new address verified by the link auth
mailed to it before applying the change, a new number unverified again) and tells the
old address; an older change or a late
``user.registered`` does not undo a newer change; after an erasure nothing comes back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from healthflow.common.links import account_link_token
from healthflow.contracts.auth import CONTACT_REVERT_PURPOSE, EMAIL_CHANGE_PURPOSE
from healthflow.devkit.testing import eventually
from healthflow.notification import store
from healthflow.notification.settings import Settings
from healthflow.notification.verification import address_hash, number_hash

from ..conftest import PERSON_KEYS, Notif, event, user_registered
from .test_erasure import erased

VERIFY = "/api/v1/notifications/email/verify"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"require_verified_email": True})


def contact_changed(user_id: str, *, email: str, phone: str | None, changed: list[str],
                    when: datetime | None = None) -> Any:
    return event("user.contact_changed",
                 PERSON_KEYS.contact_changed(user_id, email=email, phone=phone,
                                             changed=changed),
                 subject=user_id, when=when)


def link_token(mail: Any) -> str:
    link = next(w for w in mail.part("text/plain").split() if "verify-email" in w)
    return parse_qs(urlparse(link).query)["token"][0]


async def verified_user(notif: Notif, phone: str) -> tuple[str, str]:
    user_id = f"pat-{uuid.uuid4().hex[:8]}"
    email = f"{user_id}@patients.test"
    await notif.deliver(user_registered(user_id, email=email, phone=phone))
    await eventually(lambda: len(notif.smtp.to(email)) == 1, message="no welcome mail")
    ok = await notif.client.post(VERIFY, json={"token": link_token(notif.smtp.to(email)[0])})
    assert ok.status_code == 200, ok.text
    await notif.db[store.CONTACTS].update_one(  # as a redeemed SMS code leaves it
        {"_id": user_id}, {"$set": {"phone_verified_for": number_hash(phone)}})
    return user_id, email


async def test_a_new_address_is_verified_by_its_link_and_the_old_one_is_told(
        notif: Notif) -> None:
    user_id, old = await verified_user(notif, "+4915100000081")
    new = f"new-{user_id}@patients.test"

    await notif.deliver(contact_changed(user_id, email=new, phone="+4915100000082",
                                        changed=["email", "phone"]))
    contact = await store.get(notif.db, store.CONTACTS, user_id)
    assert contact is not None and (contact["email"], contact["phone"]) == (
        new, "+4915100000082")
    # auth applied it only once the link mailed to the new address was opened: proven
    assert contact["email_verified"] and contact["email_verified_for"] == address_hash(new)
    assert contact.get("phone_verified_for") is None

    await notif.settle()
    [notice] = notif.smtp.to(old)[1:]  # the old address: the welcome, then the notice
    assert "changed" in notice.part("text/plain")
    assert notif.smtp.to(new) == []  # no second verification mail to the proven address
    feed = await notif.db[store.FEED].count_documents({"user_id": user_id,
                                                       "template": "contact_changed"})
    assert feed == 1


async def test_a_new_number_alone_is_told_to_the_address_and_voids_a_pending_code(
        notif: Notif) -> None:
    user_id, email = await verified_user(notif, "+4915100000083")
    await notif.db[store.PHONE_CODES].insert_one({"_id": user_id, "number_hash": "x"})
    await notif.deliver(contact_changed(user_id, email=email, phone="+4915100000084",
                                        changed=["phone"]))
    contact = await store.get(notif.db, store.CONTACTS, user_id)
    assert contact is not None and contact["phone"] == "+4915100000084"
    assert contact.get("phone_verified_for") is None
    assert contact["email_verified_for"] == address_hash(email)  # the address stays verified
    assert await notif.db[store.PHONE_CODES].count_documents({"_id": user_id}) == 0
    await notif.settle()
    assert len(notif.smtp.to(email)) == 2  # the welcome and the notice; no new link


async def test_an_older_change_or_a_late_registration_does_not_undo_a_newer_change(
        notif: Notif) -> None:
    user_id = f"pat-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    newest = f"newest-{user_id}@patients.test"
    await notif.deliver(contact_changed(user_id, email=newest, phone=None,
                                        changed=["email"], when=now))
    await notif.deliver(contact_changed(user_id, email=f"older-{user_id}@patients.test",
                                        phone=None, changed=["email"],
                                        when=now - timedelta(seconds=5)))
    await notif.deliver(user_registered(user_id, email=f"first-{user_id}@patients.test"))
    contact = await store.get(notif.db, store.CONTACTS, user_id)
    assert contact is not None and contact["email"] == newest and contact["active"] is True


async def test_a_change_consumed_after_the_erasure_resurrects_nothing(notif: Notif) -> None:
    user_id, old = await verified_user(notif, "+4915100000085")
    late = contact_changed(user_id, email=f"late-{user_id}@patients.test",
                           phone="+4915100000086", changed=["email", "phone"])
    PERSON_KEYS.erase(user_id)
    await notif.deliver(erased(user_id))
    await notif.deliver(late)
    contact = await store.get(notif.db, store.CONTACTS, user_id)
    assert contact is not None and contact["erased_at"]
    assert "email" not in contact and "phone" not in contact
    await notif.settle()
    assert notif.smtp.to(f"late-{user_id}@patients.test") == []
    assert len(notif.smtp.to(old)) == 1  # the welcome only


async def test_a_requested_address_gets_only_the_confirmation_link(notif: Notif) -> None:
    user_id, old = await verified_user(notif, "+4915100000091")
    new = f"wanted-{user_id}@patients.test"
    expires = notif.clock.now() + timedelta(hours=1)
    await notif.deliver(event("auth.email_change_requested",
                              PERSON_KEYS.email_change_requested(
                                  user_id, change_id="chg-1", email=new,
                                  expires_at=expires.isoformat()), subject=user_id))
    await notif.settle()
    [mail] = notif.smtp.to(new)
    text = mail.part("text/plain")
    assert "confirm-email-change?token=" in text and "60 minutes" in " ".join(text.split())
    link = next(w for w in text.split() if "confirm-email-change" in w)
    assert parse_qs(urlparse(link).query)["token"][0] == account_link_token(
        notif.runtime.settings.account_link_secret  # type: ignore[attr-defined]
        .get_secret_value().encode(),
        EMAIL_CHANGE_PURPOSE, "chg-1")
    assert len(notif.smtp.to(old)) == 1  # the welcome only: nothing changed yet
    contact = await store.get(notif.db, store.CONTACTS, user_id)
    assert contact is not None and contact["email"] == old


async def test_the_old_address_gets_a_link_to_undo_the_change(notif: Notif) -> None:
    user_id, old = await verified_user(notif, "+4915100000093")
    new = f"taken-over-{user_id}@patients.test"
    until = notif.clock.now() + timedelta(days=7)
    await notif.deliver(event("user.contact_changed", PERSON_KEYS.contact_changed(
        user_id, email=new, phone="+4915100000093", changed=["email"],
        revert_id="rev-1", revert_expires_at=until.isoformat()), subject=user_id))
    await notif.settle()
    [notice] = notif.smtp.to(old)[1:]
    text = notice.part("text/plain")
    link = next(w for w in text.split() if "revert-contact-change" in w)
    assert parse_qs(urlparse(link).query)["token"][0] == account_link_token(
        notif.runtime.settings.account_link_secret  # type: ignore[attr-defined]
        .get_secret_value().encode(), CONTACT_REVERT_PURPOSE, "rev-1")
    assert "revert-contact-change" in notice.part("text/html")
    # only the old address gets it: not the new one, not the feed
    assert all("revert-contact-change" not in m.part("text/plain") for m in notif.smtp.to(new))
    feed = await notif.db[store.FEED].find_one({"user_id": user_id,
                                                "template": "contact_changed"})
    assert feed is not None and "revert" not in repr(feed)
