"""Use case of a user's own contact details: changing the e-mail address or phone number.

The owner gives the current password and, when they have an active authenticator, a
fresh code from it (:func:`healthflow.auth.mfa.step_up`), both on the failed-login
budgets (:func:`healthflow.auth.credentials.check_current_password`: the attempt is
counted before either is checked). At most ``settings.contact_changes`` requests per
account are taken (429 past them).

* **A new e-mail address** changes nothing at once (:func:`change_contact`): a
  confirmation link goes to the new address (``auth.email_change_requested``; the token is
  :func:`healthflow.common.links.account_link_token` of the request id, stored only as
  its SHA-256 in ``contact_links``, valid ``settings.email_change_ttl`` seconds, used
  once, voided by a newer request, a password change or reset, a deactivation or a
  "this wasn't me" revert; deleted by an erasure). Redeeming it
  (:func:`confirm_email_change`, public) moves the account and publishes
  ``user.contact_changed``; the notification service tells the old address. An address
  another account has gets no link; its owner is told someone tried
  (``auth.registration_attempted``), at the request or, when the address was registered
  meanwhile, at the redemption, and nothing changes. The answer, and the account's
  ``GET /api/v1/auth/me``, are the same whether or not the address is taken.
* **A new phone number** is applied at once and published (``user.contact_changed``);
  the notification service makes it unverified again (no SMS before the code texted to
  it is typed back: :mod:`healthflow.notification.verification`).

The new values travel sealed under the person key
(:func:`healthflow.auth.personal.contact_changed_event`), so a copy of an event outliving
an erasure opens to nothing; sessions stay (the password did not change).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, ClassVar

from pymongo.errors import DuplicateKeyError

from healthflow.auth import domain, events, mfa, personal, revocation, store
from healthflow.auth.credentials import check_current_password, notify_address_owner
from healthflow.auth.service import Auth, get_own
from healthflow.common.errors import BadRequest, Conflict, TooManyRequests
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.links import account_link_token, token_digest
from healthflow.common.mongo import Document, utcnow
from healthflow.common.personaldata import seal
from healthflow.contracts.auth import CONTACT_REVERT_PURPOSE, EMAIL_CHANGE_PURPOSE

log = logging.getLogger(__name__)

TOO_MANY_CHANGES = "too many contact changes for this account; try again later"
INVALID_CONTACT_LINK = "the link is invalid, expired or already used"
CONTACT_ACCEPTED = ("a new number is changed at once and must be verified again; a new "
                    "e-mail address changes only once the link sent to it is opened, unless "
                    "it belongs to another account")
"""The one answer to a contact change, whether or not the new address is taken."""
OLD_ADDRESS_TAKEN = ("the old address belongs to another account by now: every session "
                     "has ended and the account keeps its current address; reset the "
                     "password")


class InvalidContactLink(BadRequest):
    """A contact-change link's token that names no usable link (unknown, used, superseded,
    expired, or its account inactive): one answer for all (400)."""

    title: ClassVar[str] = "Invalid Contact Link"
    slug: ClassVar[str] = "invalid-contact-link"

    def __init__(self) -> None:
        super().__init__(INVALID_CONTACT_LINK)


class _AddressTaken(Exception):
    """Inside the transaction: the new address belongs to another account (rolled back)."""


async def change_contact(auth: Auth, *, user_id: str, current_password: str,
                         email: str | None, phone: str | None, code: str | None,
                         client_ip: str | None) -> list[str]:
    """The owner ``user_id`` asks to replace their e-mail address (``email``: a link goes
    there first) and/or phone number (``phone``, E.164, already normalised: at once);
    returns what was applied now (``["phone"]`` or empty; an address change never is).

    Raises:
        Unauthorized: (401) the account is gone or inactive.
        TooManyRequests: (429, ``Retry-After``) the failed-login budget is spent, or
            ``settings.contact_changes`` requests were made already.
        Forbidden: (403) ``current_password`` is wrong, or the account has an
            authenticator and ``code`` is missing, wrong or reused.
        NotFound: (404) the person key is gone (the account was erased meanwhile).
    """
    user = await get_own(auth.runtime, user_id)

    async def second_factor() -> None:
        await mfa.step_up(auth, user, code)

    await check_current_password(auth, user, current_password, client_ip,
                                 second_factor=second_factor)
    new_email = email.strip() if email is not None else None
    if new_email is not None and domain.normalize_email(new_email) == user["email_normalized"]:
        new_email = None
    new_phone = phone if phone is not None and phone != user.get("phone") else None
    if new_email is None and new_phone is None:
        return []
    wait = await auth.throttle.spend(auth.settings.contact_changes, "contact-change", user_id)
    if wait is not None:
        raise TooManyRequests(TOO_MANY_CHANGES, retry_after=wait)
    if new_email is not None:
        await _request_email_change(auth, user, new_email)
    if new_phone is None:
        return []
    return await _apply(auth, user_id, {"phone": new_phone}, ["phone"])


async def _request_email_change(auth: Auth, user: Document, email: str) -> None:
    email_key = domain.normalize_email(email)
    if await store.find_user_by_email(auth.runtime.db, email_key) is not None:
        await notify_address_owner(auth, email)
        return
    key = await personal.person_key(auth.runtime, auth.keys.wrapper, user["_id"])
    change_id, now = str(uuid.uuid4()), utcnow()
    doc = _new_link(auth, EMAIL_CHANGE_PURPOSE, change_id, user["_id"], email, now=now,
                    ttl=auth.settings.email_change_ttl)

    async def apply(uow: UnitOfWork) -> None:
        await _insert_link(auth, doc, uow)
        uow.publish(events.EmailChangeRequested(
            user_id=user["_id"], change_id=change_id,
            email=seal(key, user["_id"], "email", email),
            expires_at=doc["expires_at"]), subject=user["_id"])

    await auth.runtime.transact(apply, actor=user["_id"])


def _new_link(auth: Auth, purpose: str, link_id: str, user_id: str, email: str, *,
              now: Any, ttl: int) -> Document:
    token = account_link_token(auth.settings.account_link_secret.get_secret_value().encode(),
                               purpose, link_id)
    expires_at = now + timedelta(seconds=ttl)
    return {"_id": token_digest(token), "link_id": link_id, "purpose": purpose,
            "user_id": user_id, "email": email,
            "email_normalized": domain.normalize_email(email), "created_at": now,
            "expires_at": expires_at, "used_at": None, "outcome": None,
            "purge_at": expires_at + timedelta(days=1)}


async def _insert_link(auth: Auth, doc: Document, uow: UnitOfWork) -> None:
    """Store ``doc``; earlier unused confirmation links of its user are void from now
    ("this wasn't me" links stay: a second change must not void the first one's)."""
    links = auth.runtime.db[store.CONTACT_LINKS]
    if doc["purpose"] == EMAIL_CHANGE_PURPOSE:
        await links.update_many(
            {"user_id": doc["user_id"], "purpose": doc["purpose"], "used_at": None},
            {"$set": {"used_at": doc["created_at"], "outcome": "superseded"}},
            session=uow.session)
    await links.insert_one(doc, session=uow.session)


async def _find_link(auth: Auth, token: str, purpose: str) -> tuple[Document, Document]:
    """The unused, unexpired ``purpose`` link of ``token`` and its active account (not
    marked: :func:`_mark_used` does, in the transaction that applies it).

    Raises:
        InvalidContactLink: (400) no such link, or its account is gone or inactive.
    """
    link = await auth.runtime.db[store.CONTACT_LINKS].find_one(
        {"_id": token_digest(token), "purpose": purpose, "used_at": None,
         "expires_at": {"$gt": utcnow()}})
    user = await store.get_user(auth.runtime.db, link["user_id"]) if link else None
    if link is None or user is None or user["status"] != "active" or user.get("erased_at"):
        raise InvalidContactLink()
    return link, user


async def _mark_used(auth: Auth, link: Document, uow: UnitOfWork, *, now: Any,
                     outcome: str = "used") -> None:
    """Mark ``link`` used inside ``uow`` (rolled back with it).

    Raises:
        InvalidContactLink: (400) it was used, voided or expired meanwhile.
    """
    marked = await auth.runtime.db[store.CONTACT_LINKS].find_one_and_update(
        {"_id": link["_id"], "used_at": None, "expires_at": {"$gt": now}},
        {"$set": {"used_at": now, "outcome": outcome}}, session=uow.session)
    if marked is None:
        raise InvalidContactLink()


async def confirm_email_change(auth: Auth, *, token: str) -> None:
    """Redeem the confirmation link ``token`` sent to a new address: the account moves to
    it and ``user.contact_changed`` is published with a "this wasn't me" link for the old
    address (:func:`revert_contact_change`), in the transaction that marks the link used
    (a failure leaves it usable). When the address has an account by now, nothing
    changes, the link is used up and the address's owner is told (the same answer).

    Raises:
        InvalidContactLink: (400) the token names no unused, unexpired link of an
            active account.
    """
    link, user = await _find_link(auth, token, EMAIL_CHANGE_PURPOSE)
    changes = {"email": link["email"], "email_normalized": link["email_normalized"]}
    revert = _new_link(auth, CONTACT_REVERT_PURPOSE, str(uuid.uuid4()), user["_id"],
                       user["email"], now=utcnow(), ttl=auth.settings.contact_revert_ttl)
    if await _apply(auth, user["_id"], changes, ["email"], revert=revert, used=link) == []:
        await auth.runtime.transact(
            lambda uow: _mark_used(auth, link, uow, now=utcnow(), outcome="taken"),
            actor=user["_id"])
        await notify_address_owner(auth, link["email"])


async def revert_contact_change(auth: Auth, *, token: str) -> int:
    """Redeem the "this wasn't me" link ``token`` of a notice to an old address: the
    account gets that address back (``user.contact_changed``), every session ends
    (``auth.user_tokens_revoked``, reason ``logout``: the owner signs out everywhere),
    pending password resets are void (their link may have gone to the new address) and
    so are the pending address change and the "this wasn't me" links created *after*
    this one (older ones stay: a hijacker who moved the account on again must not void
    the owner's link with the link of their own first address); the sessions ended. All
    of it commits with the link marked used. Whoever changed it must not keep the
    account, so the owner should reset the password next (the notice says so).

    Raises:
        InvalidContactLink: (400) the token names no unused, unexpired link of an
            active account.
        Conflict: (409) the old address has another account by now: the link is used
            up and every session ended, but the account keeps its current address.
    """
    link, user = await _find_link(auth, token, CONTACT_REVERT_PURPOSE)
    user_id = user["_id"]
    key = await personal.person_key(auth.runtime, auth.keys.wrapper, user_id)
    changes = {"email": link["email"], "email_normalized": link["email_normalized"]}

    async def apply(uow: UnitOfWork, restore: bool) -> int:
        now = utcnow()
        await _mark_used(auth, link, uow, now=now)
        await store.cancel_contact_links(
            auth.runtime.db, user_id, [EMAIL_CHANGE_PURPOSE], now=now, session=uow.session)
        await store.cancel_contact_links(
            auth.runtime.db, user_id, [CONTACT_REVERT_PURPOSE], now=now,
            after=link["created_at"], session=uow.session)
        await auth.runtime.db[store.PASSWORD_RESETS].update_many(
            {"user_id": user_id, "used_at": None},
            {"$set": {"used_at": now, "outcome": "cancelled"}}, session=uow.session)
        if restore:
            if await store.find_user_by_email(auth.runtime.db, link["email_normalized"],
                                              session=uow.session) is not None:
                raise _AddressTaken
            updated = await _write_contact(auth, uow, user_id, changes, now)
            if updated is not None:
                uow.publish(personal.contact_changed_event(key, updated, ["email"]),
                            subject=user_id, actor=user_id)
        return await revocation.revoke_all_sessions(auth.runtime, user_id, reason="logout",
                                                    actor=user_id, uow=uow)

    try:
        return await auth.runtime.transact(lambda uow: apply(uow, True), actor=user_id)
    except _AddressTaken:
        await auth.runtime.transact(lambda uow: apply(uow, False), actor=user_id)
        raise Conflict(OLD_ADDRESS_TAKEN) from None


async def _write_contact(auth: Auth, uow: UnitOfWork, user_id: str,
                         changes: dict[str, Any], now: datetime) -> Document | None:
    """Set ``changes`` (address, number) on the account in ``uow``'s transaction; the
    account after, or ``None`` when there is none. Raises :class:`_AddressTaken` when
    another account has the address (the unique index)."""
    try:
        return await store.update_user(
            auth.runtime.db, user_id,
            {"$set": changes | {"updated_at": now, "contact_changed_at": now}},
            session=uow.session)
    except DuplicateKeyError:
        raise _AddressTaken from None


async def _apply(auth: Auth, user_id: str, changes: dict[str, Any], changed: list[str], *,
                 revert: Document | None = None, used: Document | None = None) -> list[str]:
    """Write ``changes`` to the account and publish ``user.contact_changed`` (with the
    ``revert`` link stored, and the ``used`` link marked used, when given) in one
    transaction; ``changed``, or empty when the address is taken or the account erased.

    Raises:
        InvalidContactLink: (400) ``used`` was used, voided or expired meanwhile.
    """
    key = await personal.person_key(auth.runtime, auth.keys.wrapper, user_id)

    async def apply(uow: UnitOfWork) -> None:
        now = utcnow()
        if used is not None:
            await _mark_used(auth, used, uow, now=now)
        updated = await _write_contact(auth, uow, user_id, changes, now)
        if updated is None or updated.get("erased_at") is not None:
            raise _AddressTaken  # erased meanwhile: nothing to change
        if revert is not None:
            await _insert_link(auth, revert, uow)
        uow.publish(personal.contact_changed_event(key, updated, changed, revert=revert),
                    subject=user_id, actor=user_id)

    try:
        await auth.runtime.transact(apply, actor=user_id)
    except _AddressTaken:
        log.info("contact change not applied: address taken or account erased",
                 extra={"user_id": user_id})
        return []
    return changed
