"""Personal data in the notification service: opened from ``user.registered`` and
``user.contact_changed``, erased on ``user.erased`` (crypto-shredding,
:mod:`healthflow.common.personaldata`).

``user.registered`` carries the address, name and phone sealed under the person's key;
:func:`apply_registered` asks auth for the key, opens them once and hands them to
:func:`healthflow.notification.contacts.apply_user` (the contact read model and the
welcome e-mail). ``user.contact_changed`` (:func:`apply_contact_changed`) likewise hands
the new address and number to :func:`healthflow.notification.contacts.apply_contact_changed`.
A key that is gone (the person was erased meanwhile) leaves nothing written: the contact
stays unknown (or erased) and nothing is sent.

:func:`apply_erased` deletes every clear copy the service holds of the person: the
address, name and phone of the contact (which stays, inactive, with ``erased_at``),
the addresses and bodies of their deliveries (queued ones are cancelled, ``erased``),
their feed, their pending phone code and their push subscriptions.
"""

from __future__ import annotations

import logging
from datetime import datetime

from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.personaldata import person_keys_for
from healthflow.contracts.auth import UserContactChanged, UserErased, UserRegistered
from healthflow.notification import contacts, domain, store
from healthflow.notification.service import Context

log = logging.getLogger(__name__)


async def apply_registered(uow: UnitOfWork, data: UserRegistered, ctx: Context,
                           event_id: str) -> None:
    """``user.registered``: open the sealed values and build the contact (see above).

    Raises:
        httpx.HTTPError: auth cannot answer (the delivery is retried).
    """
    opened = await person_keys_for(ctx.settings).open_fields(
        data.user_id, {"email": data.email, "full_name": data.full_name,
                       "phone": data.phone})
    if opened is None:
        log.info("user.registered of an erased person: nothing kept",
                 extra={"user_id": data.user_id})
        return
    raw = {"user_id": data.user_id, "roles": data.roles} | opened
    await contacts.apply_user(uow, UserRegistered.event_type, raw, ctx, event_id)


async def apply_contact_changed(uow: UnitOfWork, data: UserContactChanged, at: datetime,
                                ctx: Context, event_id: str) -> None:
    """``user.contact_changed`` (the event's ``time`` ``at``): open the new address and
    number and apply them (see above); nothing when the person was erased.

    Raises:
        httpx.HTTPError: auth cannot answer (the delivery is retried).
    """
    opened = await person_keys_for(ctx.settings).open_fields(
        data.user_id, {"email": data.email, "phone": data.phone})
    email = (opened or {}).get("email")
    if opened is None or email is None:
        log.info("user.contact_changed of an erased person: nothing kept",
                 extra={"user_id": data.user_id})
        return
    await contacts.apply_contact_changed(uow, data.user_id, email=email,
                                         phone=opened.get("phone"), at=at, ctx=ctx,
                                         event_id=event_id)


async def apply_erased(uow: UnitOfWork, data: UserErased, ctx: Context) -> None:
    """``user.erased``: delete the clear personal values of ``data.user_id`` (see above)."""
    user_id, now, session = data.user_id, ctx.clock.now(), uow.session
    db = uow.db
    await db[store.CONTACTS].update_one(
        {"_id": user_id},
        {"$set": {"active": False, "erased_at": now, "updated_at": now},
         "$unset": {"email": "", "phone": "", "full_name": "", "email_verified_for": "",
                    "phone_verified_for": ""}},
        upsert=True, session=session)
    await db[store.DELIVERIES].update_many(
        {"user_id": user_id, "status": domain.Status.QUEUED.value},
        {"$set": {"status": domain.Status.CANCELLED.value, "reason": "erased",
                  "updated_at": now}}, session=session)
    await db[store.DELIVERIES].update_many(
        {"user_id": user_id}, {"$unset": {"to": "", "content": "", "last_error": ""},
                               "$set": {"updated_at": now}}, session=session)
    await db[store.FEED].delete_many({"user_id": user_id}, session=session)
    await db[store.PHONE_CODES].delete_many({"_id": user_id}, session=session)
    await db[store.PUSH_SUBSCRIPTIONS].delete_many({"user_id": user_id}, session=session)
