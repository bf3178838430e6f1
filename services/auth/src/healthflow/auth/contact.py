"""Use case of a user's own contact details: changing the e-mail address or phone number.

The owner gives the current password (:func:`healthflow.auth.credentials.check_current_password`,
on the failed-login budgets) and, when they have an active authenticator, a fresh code from
it (:func:`healthflow.auth.mfa.step_up`). The account is updated and
``user.contact_changed`` published in one transaction, the address and number after the
change sealed under the person key (:func:`healthflow.auth.personal.contact_changed_event`),
so a copy of the event outliving an erasure opens to nothing. The notification service
tells the old address and asks for the new address (or number) to be verified again;
sessions stay (the password did not change).

An address that another account has gets the same answer as a free one (nothing changes,
no event; like sign-up, the answer does not tell whether the address is registered); the
account's ``GET /api/v1/auth/me`` shows the outcome to its owner only.
"""

from __future__ import annotations

import logging

from pymongo.errors import DuplicateKeyError

from healthflow.auth import domain, mfa, personal, store
from healthflow.auth.credentials import check_current_password
from healthflow.auth.service import Auth, get_own
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import utcnow

log = logging.getLogger(__name__)


class _AddressTaken(Exception):
    """Inside the transaction: the new address belongs to another account (rolled back)."""


async def change_contact(auth: Auth, *, user_id: str, current_password: str,
                         email: str | None, phone: str | None, code: str | None,
                         client_ip: str | None) -> list[str]:
    """The owner ``user_id`` replaces their e-mail address (``email``) and/or phone number
    (``phone``, E.164, already normalised); returns what changed (``"email"``,
    ``"phone"``, sorted; empty when nothing did, the address being taken included).

    Raises:
        Unauthorized: (401) the account is gone or inactive.
        TooManyRequests: (429, ``Retry-After``) the failed-login budget is spent.
        Forbidden: (403) ``current_password`` is wrong, or the account has an
            authenticator and ``code`` is missing, wrong or reused.
        NotFound: (404) the person key is gone (the account was erased meanwhile).
    """
    user = await get_own(auth.runtime, user_id)
    await check_current_password(auth, user, current_password, client_ip)
    await mfa.step_up(auth, user, code, client_ip)
    changes: dict[str, object] = {}
    if email is not None and email.strip() != user["email"]:
        changes |= {"email": email.strip(), "email_normalized": domain.normalize_email(email)}
    if phone is not None and phone != user.get("phone"):
        changes["phone"] = phone
    changed: list[str] = [k for k in ("email", "phone") if k in changes]
    if not changed:
        return []
    key = await personal.person_key(auth.runtime, auth.keys.wrapper, user_id)

    async def apply(uow: UnitOfWork) -> None:
        now = utcnow()
        try:
            updated = await store.update_user(
                auth.runtime.db, user_id,
                {"$set": changes | {"updated_at": now, "contact_changed_at": now}},
                session=uow.session)
        except DuplicateKeyError:
            raise _AddressTaken from None
        if updated is None or updated.get("erased_at") is not None:
            raise _AddressTaken  # erased meanwhile: nothing to change
        uow.publish(personal.contact_changed_event(key, updated, changed), subject=user_id,
                    actor=user_id)

    try:
        await auth.runtime.transact(apply, actor=user_id)
    except _AddressTaken:
        log.info("contact change not applied: address taken or account erased",
                 extra={"user_id": user_id})
        return []
    return changed
