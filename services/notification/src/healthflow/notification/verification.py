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

Phone numbers are verified by a one-time code (:func:`send_phone_code`,
:func:`verify_phone_code`): ``POST …/phone/verification`` texts 6 random digits
(``secrets``) to the contact's current number as a ``phone_verification`` SMS (through the
delivery log and the Twilio sender, like every SMS); ``phone_codes`` keeps only the
HMAC-SHA256 (RFC 2104, under ``email_verification_secret``) of the user id, the number's
SHA-256 and the code, for ``phone_code_ttl`` seconds and ``phone_code_max_attempts``
tries (then it is void), and a new code is texted at most once per
``phone_code_cooldown`` seconds and ``phone_codes_per_day`` times in 24 hours per account
and per number (``phone_code_budgets``; 429 with ``Retry-After``), so a guesser gets at
most codes × tries guesses a day. ``POST …/phone/verify`` with
the right code sets ``phone_verified_for`` (SHA-256 of the number) on the contact, so a
later change of number is unverified again; the sent SMS's body is dropped from the
delivery log (:data:`SECRET_TEMPLATES`).

While ``require_verified_phone`` is on (the default), SMS of any template outside
:data:`ESSENTIAL_SMS_TEMPLATES` goes only to a verified number (otherwise suppressed with
reason ``unverified``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument

from healthflow.common.errors import BadRequest, Conflict, TooManyRequests, UnprocessableContent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.common.service import ServiceRuntime
from healthflow.notification import domain, store
from healthflow.notification.domain import Channel
from healthflow.notification.messages import plan_message
from healthflow.notification.service import Context

ESSENTIAL_EMAIL_TEMPLATES = frozenset({
    domain.WELCOME.template,  # carries the verification link itself
    domain.PASSWORD_RESET.template,
    domain.PASSWORD_CHANGED.template,  # security notice
    domain.REGISTRATION_ATTEMPTED.template,  # security notice
    domain.CONTACT_CHANGED.template,  # security notice, to the address the account left
    domain.EMAIL_VERIFICATION.template,  # a changed address's verification link
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


ESSENTIAL_SMS_TEMPLATES = frozenset({
    domain.PHONE_VERIFICATION.template,  # carries the code itself
    domain.TASK_OFFERED.template,  # a paramedic's urgent task offer (the push's fallback)
    domain.EMERGENCY_INBOUND.template,  # staff told an ambulance is coming
})
"""SMS sent whether or not the number is verified: the verification code, and the urgent
staff messages — an emergency must not wait for a paramedic or a receiving nurse to have
typed a code; those come from internal events about staff accounts an administrator
created (not a number anyone can register to make the platform text it), and the
destination caps still apply. Everything a patient gets by SMS (appointment notices,
reminders, prescriptions, reports, refunds) waits for a verified number."""

SECRET_TEMPLATES = frozenset({domain.PHONE_VERIFICATION.template})
"""Templates whose content the delivery log drops once the delivery ends (sent, failed,
suppressed): the code must not stay readable in the database beside its hash."""

BAD_CODE = "the code is wrong, expired or used up; request a new one"
"""One answer for every refused code (wrong, expired, voided, for an earlier number)."""


def number_hash(phone: str) -> str:
    """SHA-256 (hex) of the number with spaces removed (E.164 as the contact holds it)."""
    return hashlib.sha256("".join(phone.split()).encode()).hexdigest()


def phone_verified(contact: Document | None) -> bool:
    """Whether the contact's current number is the one that was verified."""
    if not contact or not contact.get("phone"):
        return False
    return bool(contact.get("phone_verified_for") == number_hash(contact["phone"]))


def unverified_reason(settings: Any, template: str, contact: Document | None,
                      channel: Channel = Channel.EMAIL) -> str | None:
    """``"unverified"`` when an e-mail (or, ``channel`` SMS, a text) of ``template`` must
    not go to ``contact``'s address (number); ``None`` for other channels."""
    if channel is Channel.EMAIL:
        if not settings.require_verified_email or template in ESSENTIAL_EMAIL_TEMPLATES:
            return None
        return None if email_verified(contact) else "unverified"
    if channel is Channel.SMS:
        if not settings.require_verified_phone or template in ESSENTIAL_SMS_TEMPLATES:
            return None
        return None if phone_verified(contact) else "unverified"
    return None


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


# --- phone numbers: one-time codes by SMS ------------------------------------------------


def code_hash(secret: bytes, user_id: str, number: str, code: str) -> str:
    """HMAC-SHA256 (hex, RFC 2104) of the purpose, user id, number hash and code: a
    6-digit code must be keyed, its plain hash is reversed by trying a million codes."""
    message = "\x1f".join(("phone-code", user_id, number, code)).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class CodeSent:
    """A code queued for ``to`` (masked), valid until ``expires_at`` (aware UTC)."""

    to: str
    expires_at: datetime


async def send_phone_code(runtime: ServiceRuntime, ctx: Context, user_id: str) -> CodeSent:
    """Queue a new one-time code by SMS to the user's current number (it replaces any
    earlier code); the dispatcher sends it.

    Raises:
        Conflict: (409) the account has no number, or its number is already verified.
        TooManyRequests: (429, ``Retry-After`` seconds) a code was texted less than
            ``phone_code_cooldown`` seconds ago, or ``phone_codes_per_day`` were texted to
            the account or the number in the current 24 hours.
    """
    settings = ctx.settings
    code = f"{secrets.randbelow(10 ** 6):06d}"
    secret = settings.email_verification_secret.get_secret_value().encode()

    async def write(uow: UnitOfWork) -> CodeSent:
        now = ctx.clock.now()
        contact = await store.get(uow.db, store.CONTACTS, user_id, uow.session)
        phone = (contact or {}).get("phone")
        if not phone:
            raise Conflict("the account has no phone number to verify")
        if phone_verified(contact):
            raise Conflict("the account's phone number is already verified")
        earlier = await store.get(uow.db, store.PHONE_CODES, user_id, uow.session)
        if earlier is not None:
            wait = (earlier["sent_at"] + timedelta(seconds=settings.phone_code_cooldown)
                    - now).total_seconds()
            if wait > 0:
                raise TooManyRequests("a code was sent a moment ago; wait before asking "
                                      "for another", retry_after=math.ceil(wait))
        expires = now + timedelta(seconds=settings.phone_code_ttl)
        number = number_hash(phone)
        for budget in (f"user:{user_id}", f"number:{number}"):
            await _spend_daily_code(uow, budget, now, settings.phone_codes_per_day)
        await uow.db[store.PHONE_CODES].replace_one(
            {"_id": user_id},
            {"number_hash": number, "code_hash": code_hash(secret, user_id, number, code),
             "attempts": 0, "sent_at": now, "expires_at": expires,
             "purge_at": expires + timedelta(seconds=settings.phone_code_cooldown)},
            upsert=True, session=uow.session)
        await plan_message(uow, ctx, user_id=user_id, kind=domain.PHONE_VERIFICATION,
                           source_id=f"phone-code:{uuid.uuid4().hex}", trigger=None,
                           context={"code": code,
                                    "valid_minutes": max(1, int(settings.phone_code_ttl // 60))},
                           expires_at=expires)
        return CodeSent(to=domain.mask_address(Channel.SMS, phone) or "", expires_at=expires)

    return await runtime.transact(write, actor=user_id)


async def _spend_daily_code(uow: UnitOfWork, budget_id: str, now: datetime, cap: int) -> None:
    """Count one code against ``budget_id``'s 24-hour window (opened by its first code).

    Raises:
        TooManyRequests: (429, ``Retry-After`` until the window ends) ``cap`` spent.
    """
    budgets = uow.db[store.PHONE_CODE_BUDGETS]
    doc = await budgets.find_one({"_id": budget_id}, session=uow.session)
    if doc is None or doc["window_end"] <= now:
        end = now + timedelta(days=1)
        await budgets.replace_one({"_id": budget_id},
                                  {"count": 1, "window_end": end, "purge_at": end},
                                  upsert=True, session=uow.session)
        return
    if doc["count"] >= cap:
        raise TooManyRequests(
            "the day's verification codes for this account or number are spent; try "
            "again later", retry_after=math.ceil((doc["window_end"] - now).total_seconds()))
    await budgets.update_one({"_id": budget_id}, {"$inc": {"count": 1}}, session=uow.session)


async def verify_phone_code(runtime: ServiceRuntime, ctx: Context, user_id: str,
                            code: str) -> None:
    """Mark the user's current number verified if ``code`` is its live code.

    Each try spends one of the code's ``phone_code_max_attempts`` before it is compared
    (an atomic increment, so parallel guesses get no more); the right code is used up.

    Raises:
        UnprocessableContent: (422, one constant detail) wrong, expired, voided, already
            used, or issued for a number the account no longer has.
    """
    settings = ctx.settings
    now = ctx.clock.now()
    contact = await store.get(runtime.db, store.CONTACTS, user_id)
    phone = (contact or {}).get("phone")
    live = await runtime.db[store.PHONE_CODES].find_one_and_update(
        {"_id": user_id, "attempts": {"$lt": settings.phone_code_max_attempts},
         "expires_at": {"$gt": now}},
        {"$inc": {"attempts": 1}}, return_document=ReturnDocument.AFTER)
    if not phone or live is None or live["number_hash"] != number_hash(phone):
        raise UnprocessableContent(BAD_CODE)
    secret = settings.email_verification_secret.get_secret_value().encode()
    if not hmac.compare_digest(live["code_hash"],
                               code_hash(secret, user_id, live["number_hash"], code)):
        raise UnprocessableContent(BAD_CODE)

    async def write(uow: UnitOfWork) -> None:
        used = await uow.db[store.PHONE_CODES].delete_one(
            {"_id": user_id, "code_hash": live["code_hash"]}, session=uow.session)
        marked = await uow.db[store.CONTACTS].update_one(
            {"_id": user_id, "phone": phone},
            {"$set": {"phone_verified_for": live["number_hash"], "phone_verified_at": now,
                      "updated_at": now}}, session=uow.session)
        if used.deleted_count != 1 or marked.matched_count != 1:
            raise UnprocessableContent(BAD_CODE)  # used meanwhile, or the number changed

    await runtime.transact(write, actor=user_id)
