"""The contact read model (who a user is, where messages to them go) and what changes to it
tell the user.

* ``user.registered`` (opened by :mod:`.personal`): the contact and the welcome e-mail with
  a verification link; deliveries that were waiting for the contact are due at once.
* ``user.role_changed``, ``user.deactivated`` / ``user.activated``: roles, the active flag.
* ``user.contact_changed`` (opened by :mod:`.personal`, :func:`apply_contact_changed`): the
  new address and number replace the old ones. A new address is verified by the change
  itself (auth applies it only once the link mailed to that address was opened, and a
  revert only by the link mailed to the old one), so it gets no second verification
  mail; a new number is unverified again (``phone_verified_for`` no longer matches, and a
  pending phone code is void) until its texted code is typed back. The account's old
  address is told (``contact_changed``, an e-mail *pinned* to the old address: the
  dispatcher sends it there, not to the contact's current one) or, for a new number
  alone, the current address. Events of one user apply in the order of their ``time``: an
  older change, and a ``user.registered`` consumed after a change, do not overwrite a
  newer one. An erased contact is never written again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from healthflow.common.events.outbox import UnitOfWork
from healthflow.notification import domain, store
from healthflow.notification.messages import plan_message
from healthflow.notification.service import Context
from healthflow.notification.verification import address_hash


class UserData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_id: str
    email: str | None = None
    full_name: str | None = None
    phone: str | None = None
    roles: list[str] | None = None


def verify_link(ctx: Context, user_id: str, email: str) -> dict[str, Any]:
    """The template context of a verification link for ``email`` (``verify_link``,
    ``valid_hours``): :func:`domain.verification_token` until now + the configured TTL."""
    settings = ctx.settings
    expires = ctx.clock.now() + timedelta(seconds=settings.email_verification_ttl)
    token = domain.verification_token(settings.email_verification_secret.get_secret_value()
                                      .encode(), user_id, email, expires)
    return {"verify_link": f"{settings.app_base_url.rstrip('/')}/verify-email?token={token}",
            "valid_hours": int(settings.email_verification_ttl // 3600)}


async def apply_user(uow: UnitOfWork, event_type: str, raw: dict[str, Any], ctx: Context,
                     event_id: str) -> None:
    """``user.registered``: contact + welcome email, and the user's deliveries that were
    waiting for the contact (an event consumed before it) are due at once;
    ``user.role_changed``, ``user.deactivated`` / ``user.activated``: roles and the
    active flag."""
    data = UserData.model_validate(raw)
    now = ctx.clock.now()
    contacts = uow.db[store.CONTACTS]
    update: dict[str, Any] = {"updated_at": now}
    if event_type == "user.registered":
        update |= {"email": data.email, "phone": data.phone, "full_name": data.full_name,
                   "roles": data.roles or [], "active": True}
        current = await store.get(uow.db, store.CONTACTS, data.user_id, uow.session)
        if current is not None and current.get("contact_changed_at") is not None:
            del update["email"], update["phone"]  # a newer change came first: it stays
    elif event_type == "user.role_changed" and data.roles is not None:
        update["roles"] = data.roles
    elif event_type in ("user.deactivated", "user.activated"):
        update["active"] = event_type == "user.activated"
    else:
        return
    await contacts.update_one({"_id": data.user_id}, {"$set": update}, upsert=True,
                              session=uow.session)
    if event_type == "user.registered":  # messages that came first are due now
        await store.wake_awaiting_contact(uow.db, uow.session, data.user_id, now)
        if update.get("email"):
            await plan_message(uow, ctx, user_id=data.user_id, kind=domain.WELCOME,
                               source_id=event_id, trigger=event_type,
                               context={"name": data.full_name}
                               | verify_link(ctx, data.user_id, update["email"]))


async def apply_contact_changed(uow: UnitOfWork, user_id: str, *, email: str,
                                phone: str | None, at: datetime, ctx: Context,
                                event_id: str, revert_link: str | None = None) -> None:
    """``user.contact_changed`` of ``user_id`` at ``at`` (the event's time), its values
    opened: see the module's description. ``revert_link``: the "this wasn't me" link the
    notice to the old address carries."""
    contact = await store.get(uow.db, store.CONTACTS, user_id, uow.session) or {}
    if contact.get("erased_at") is not None or (
            contact.get("contact_changed_at") is not None
            and contact["contact_changed_at"] >= at):
        return  # erased, or a newer change is applied already
    old_email, old_phone = contact.get("email"), contact.get("phone")
    email_changed = old_email is None or address_hash(old_email) != address_hash(email)
    phone_changed = old_phone != phone
    now = ctx.clock.now()
    update: dict[str, Any] = {"$set": {"email": email, "phone": phone,
                                       "contact_changed_at": at, "updated_at": now}}
    # the address is proven: auth applies an e-mail change only once the link mailed to
    # it was opened (and a revert only by the link mailed to the old one)
    unset = {"phone_verified_for": ""} if phone_changed else {}
    if email_changed:
        update["$set"] |= {"email_verified": True, "email_verified_for": address_hash(email)}
    if unset:
        update["$unset"] = unset
    await uow.db[store.CONTACTS].update_one({"_id": user_id}, update, upsert=True,
                                            session=uow.session)
    if phone_changed:  # a code texted to the old number must not verify the new one
        await uow.db[store.PHONE_CODES].delete_many({"_id": user_id}, session=uow.session)
    if not (email_changed or phone_changed):
        return
    trigger = "user.contact_changed"
    await plan_message(uow, ctx, user_id=user_id, kind=domain.CONTACT_CHANGED,
                       source_id=event_id, trigger=trigger,
                       context={"email_changed": email_changed, "phone_changed": phone_changed,
                                "revert_link": revert_link if email_changed else None},
                       to=old_email if email_changed else None)
