"""Personal data of accounts: person keys, sealing, erasure (crypto-shredding).

Every account gets a *person key* when it is created (:func:`new_person_key_document`,
stored in ``person_keys`` as a KEK envelope, :mod:`healthflow.common.keywrap`); the
e-mail address, name and phone number in ``user.registered`` (and the address and number
in ``user.contact_changed``) are sealed under it
(:mod:`healthflow.common.personaldata`). Services that keep a clear copy read the key
from ``GET /internal/person-keys/{user_id}`` (:func:`person_key`).

:func:`erase` (GDPR art. 17, executed by an admin at the person's request) destroys the
key, anonymises the account (no address, name or phone; inactive; every session ended)
and publishes ``user.erased`` in one transaction; consumers delete their clear copies.
"""

from __future__ import annotations

from typing import Any

from healthflow.auth import domain, events, revocation, store
from healthflow.common.errors import Conflict, NotFound
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.keywrap import KeyWrapper
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Role
from healthflow.common.personaldata import (
    PersonKey,
    new_person_key,
    seal,
    seal_optional,
)
from healthflow.common.service import ServiceRuntime


def person_key_context(user_id: str) -> dict[str, str]:
    """The keywrap context (GCM associated data) of ``user_id``'s person key envelope."""
    return {"service": "auth", "record": f"person_keys/{user_id}"}


async def new_person_key_document(wrapper: KeyWrapper, user_id: str
                                  ) -> tuple[PersonKey, Document]:
    """A fresh person key for ``user_id`` and its ``person_keys`` document (wrapped)."""
    key = new_person_key()
    doc = {"_id": user_id, "key_id": key.key_id,
           "key": await wrapper.wrap(key.key, person_key_context(user_id)),
           "created_at": utcnow()}
    return key, doc


def registered_event(key: PersonKey, user: Document, *,
                     self_registered: bool) -> events.UserRegistered:
    """``user.registered`` for the new ``user`` with its personal values sealed."""
    user_id = user["_id"]
    return events.UserRegistered(
        user_id=user_id, email=seal(key, user_id, "email", user["email"]),
        full_name=seal(key, user_id, "full_name", user["full_name"]),
        phone=seal_optional(key, user_id, "phone", user.get("phone")),
        roles=user["roles"], self_registered=self_registered)


def contact_changed_event(key: PersonKey, user: Document, changed: list[str], *,
                          revert: Document | None = None) -> events.UserContactChanged:
    """``user.contact_changed`` for ``user`` as it is after the change, its address and
    number sealed like :func:`registered_event`'s; ``revert``: the "this wasn't me" link
    (``contact_links`` document) for the old address's notice."""
    user_id = user["_id"]
    return events.UserContactChanged(
        user_id=user_id, changed=sorted(changed),  # type: ignore[arg-type]  # email|phone
        email=seal(key, user_id, "email", user["email"]),
        phone=seal_optional(key, user_id, "phone", user.get("phone")),
        revert_id=revert["link_id"] if revert else None,
        revert_expires_at=revert["expires_at"] if revert else None)


async def person_key(runtime: ServiceRuntime, wrapper: KeyWrapper,
                     user_id: str) -> PersonKey:
    """``user_id``'s person key, unwrapped.

    Raises:
        NotFound: (404) no key: the person was erased, or the account predates
            person keys or does not exist.
        KeyUnwrapError: the envelope does not open with the configured KEKs.
    """
    doc = await store.get_person_key(runtime.db, user_id)
    if doc is None:
        raise NotFound(f"no person key for {user_id} (erased, or never made)")
    return PersonKey(key_id=doc["key_id"],
                     key=await wrapper.unwrap(doc["key"], person_key_context(user_id)))


ANONYMISED: dict[str, Any] = {"email": "", "full_name": "", "name_folded": "", "phone": None}


async def erase(runtime: ServiceRuntime, user_id: str, *, actor: str) -> Document:
    """Erase ``user_id``'s personal data; the anonymised account.

    In one transaction: hard-delete the person key and the account's contact-change links
    (they hold addresses in clear), replace the address, name and phone
    of the account with empty values (``email_normalized`` becomes ``erased:<user_id>``,
    so the address may register again), deactivate it (``erased_at`` set), end every
    session and refuse its access tokens everywhere (``auth.user_tokens_revoked``) and
    publish ``user.erased``. Idempotent: an erased account is returned unchanged,
    without an event.

    Raises:
        NotFound (404); Conflict (409): the account is the last active admin.
    """

    async def apply(uow: UnitOfWork) -> Document:
        user = await store.get_user(runtime.db, user_id, session=uow.session)
        if user is None:
            raise NotFound(f"no user has the id {user_id}")
        if user.get("erased_at") is not None:
            return user
        if Role.ADMIN in user["roles"] and user["status"] == "active" and (
                await store.count_active_with_role(runtime.db, Role.ADMIN,
                                                   session=uow.session)) <= 1:
            raise Conflict("this is the last active admin; make another admin first")
        now = utcnow()
        await store.delete_person_key(runtime.db, user_id, session=uow.session)
        await runtime.db[store.CONTACT_LINKS].delete_many({"user_id": user_id},
                                                          session=uow.session)
        updated = await store.update_user(runtime.db, user_id, {"$set": ANONYMISED | {
            "email_normalized": domain.erased_email_key(user_id), "status": "inactive",
            "deactivated_at": user.get("deactivated_at") or now, "erased_at": now,
            "updated_at": now}}, session=uow.session)
        await revocation.revoke_all_sessions(runtime, user_id, reason="admin", actor=actor,
                                             uow=uow)
        uow.publish(events.UserErased(user_id=user_id, erased_by=actor), subject=user_id)
        assert updated is not None
        return updated

    return await runtime.transact(apply, actor=actor)
