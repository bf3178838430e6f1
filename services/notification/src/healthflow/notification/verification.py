"""Redeeming the welcome mail's e-mail verification link, and which messages need it.

The welcome mail (``user.registered``) links to ``<app_base_url>/verify-email?token=…``;
the app page POSTs the token to ``/api/v1/notifications/email/verify`` (a GET in a mail
never changes state: link scanners follow links). The token is
:func:`domain.verification_token` (HMAC-SHA256, RFC 2104) over the user id, the address and
its expiry, so it is good for the contact's *current* address only.

On success the contact read model gets ``email_verified: true`` and
``email_verified_for`` (SHA-256 of the lower-cased address, so a later change of address
is unverified again). While ``require_verified_email`` is on (the default), e-mail of any
template outside :data:`ESSENTIAL_EMAIL_TEMPLATES` goes only to a verified address
(otherwise it is suppressed with reason ``unverified``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from healthflow.common.errors import BadRequest
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.common.service import ServiceRuntime
from healthflow.notification import domain, store
from healthflow.notification.service import Context

ESSENTIAL_EMAIL_TEMPLATES = frozenset({
    domain.WELCOME.template,  # carries the verification link itself
    domain.PASSWORD_RESET.template,
    domain.PASSWORD_CHANGED.template,  # security notice
    domain.REGISTRATION_ATTEMPTED.template,  # security notice
})
"""E-mail sent whether or not the address is verified: the verification mail and the
account's security messages (they must reach the registered owner)."""

BAD_TOKEN = "the verification link is invalid, expired or already used"  # noqa: S105 - a message
"""One answer for every refused token (forged, for another address, expired, reused)."""


def address_hash(email: str) -> str:
    """SHA-256 (hex) of the lower-cased, stripped address."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def email_verified(contact: Document | None) -> bool:
    """Whether the contact's current address is the one that was verified."""
    if not contact or not contact.get("email") or not contact.get("email_verified"):
        return False
    return bool(contact.get("email_verified_for") == address_hash(contact["email"]))


def unverified_reason(settings: Any, template: str, contact: Document | None) -> str | None:
    """``"unverified"`` when an e-mail of ``template`` must not go to ``contact``'s address."""
    if not settings.require_verified_email or template in ESSENTIAL_EMAIL_TEMPLATES:
        return None
    return None if email_verified(contact) else "unverified"


async def redeem_email_token(runtime: ServiceRuntime, ctx: Context, token: str) -> str:
    """Mark the address ``token`` was issued for verified; returns the user id.

    Single use: a token for an address already verified is refused like a forged one.

    Raises:
        BadRequest: (400, one constant detail) forged, for another address, expired or
            already used.
    """
    user_id = token.split(".", 1)[0]
    secret = ctx.settings.email_verification_secret.get_secret_value().encode()

    async def write(uow: UnitOfWork) -> str:
        contact = await store.get(uow.db, store.CONTACTS, user_id, uow.session)
        email = (contact or {}).get("email")
        if (not email or email_verified(contact)
                or domain.check_verification_token(secret, token, email,
                                                   ctx.clock.now()) != user_id):
            raise BadRequest(BAD_TOKEN)
        result = await uow.db[store.CONTACTS].update_one(
            {"_id": user_id, "email": email, "email_verified_for": {"$ne": address_hash(email)}},
            {"$set": {"email_verified": True, "email_verified_for": address_hash(email),
                      "email_verified_at": ctx.clock.now(), "updated_at": ctx.clock.now()}},
            session=uow.session)
        if result.modified_count != 1:
            raise BadRequest(BAD_TOKEN)
        return user_id

    return await runtime.transact(write, actor=user_id)
