"""Signing-key use cases of the auth service: list, rotate (``auth.signing_key_rotated``),
revoke at once (``auth.signing_key_revoked``). The key material, the JWKS and each
replica's key ring are :mod:`healthflow.auth.keys`."""

from __future__ import annotations

import logging

from healthflow.auth import domain, events, revocation, store
from healthflow.auth.keys import KeyRing, key_info, new_key_document
from healthflow.common.errors import Conflict, NotFound
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime

log = logging.getLogger(__name__)


async def list_keys(runtime: ServiceRuntime) -> list[Document]:
    """Every signing key document, oldest first (callers show only public facts)."""
    return await store.list_keys(runtime.db)


async def rotate_keys(runtime: ServiceRuntime, ring: KeyRing, *, actor: str) -> domain.Rotation:
    """Promote ``next`` to ``active``, retire the ``active`` key, create a new ``next``.

    One transaction; publishes ``auth.signing_key_rotated``; ``ring`` reloads
    at once after it. The retired key stays in the JWKS for
    :attr:`KeyRing.max_token_age` seconds; retired keys past that are removed.
    """
    db = runtime.db

    async def apply(uow: UnitOfWork) -> domain.Rotation:
        now = utcnow()
        docs = await store.list_keys(db, states=sorted(domain.PUBLISHED_STATES),
                                     session=uow.session)
        plan = domain.plan_rotation([key_info(d) for d in docs], now=now,
                                    max_token_age=ring.max_token_age)
        if plan.retire:
            await store.set_key_state(
                db, plan.retire, from_state=domain.KeyState.ACTIVE,
                to_state=domain.KeyState.RETIRED,
                fields={"retired_at": now, "remove_after": plan.retire_until},
                session=uow.session)
        if plan.activate:
            activated = plan.activate
            await store.set_key_state(db, activated, from_state=domain.KeyState.NEXT,
                                      to_state=domain.KeyState.ACTIVE, fields={"activated_at": now},
                                      session=uow.session)
        else:
            doc = await new_key_document(domain.KeyState.ACTIVE, now, ring.wrapper)
            await store.insert_key(db, doc, session=uow.session)
            activated = doc["_id"]
        for kid in plan.remove:
            await store.set_key_state(db, kid, from_state=domain.KeyState.RETIRED,
                                      to_state=domain.KeyState.REMOVED, fields={"removed_at": now},
                                      session=uow.session)
        upcoming = await new_key_document(domain.KeyState.NEXT, now, ring.wrapper)
        await store.insert_key(db, upcoming, session=uow.session)
        rotation = domain.Rotation(activated_kid=activated, retired_kid=plan.retire,
                                   next_kid=upcoming["_id"],
                                   retired_until=plan.retire_until if plan.retire else None,
                                   removed_kids=plan.remove)
        uow.publish(events.SigningKeyRotated(
            activated_kid=rotation.activated_kid, retired_kid=rotation.retired_kid,
            next_kid=rotation.next_kid, retired_until=rotation.retired_until,
            removed_kids=list(rotation.removed_kids)), subject=rotation.activated_kid)
        return rotation

    rotation = await runtime.transact(apply, actor=actor)
    await ring.reload()
    log.info("rotated signing keys", extra={"kid": rotation.activated_kid})
    return rotation


async def revoke_key(runtime: ServiceRuntime, ring: KeyRing, kid: str, *,
                     actor: str) -> Document:
    """Revoke the signing key ``kid`` at once (compromise): it leaves the JWKS, every
    token it signed is refused everywhere (``auth.signing_key_revoked``). Revoking the
    active key promotes the ``next`` one first (a rotation); a new ``next`` is made
    when the revoked key was either. ``ring`` reloads after it. The revoked key document.

    Raises:
        NotFound (404): no published key has this id (removed and revoked keys sign
            nothing any verifier accepts).
    """
    db = runtime.db
    doc = next((d for d in await store.list_keys(db, states=sorted(domain.PUBLISHED_STATES))
                if d["_id"] == kid), None)
    if doc is None:
        raise NotFound(f"no published signing key has the id {kid}")
    if doc["state"] == domain.KeyState.ACTIVE:
        await rotate_keys(runtime, ring, actor=actor)

    async def apply(uow: UnitOfWork) -> Document:
        now = utcnow()
        docs = await store.list_keys(db, states=sorted(domain.PUBLISHED_STATES),
                                     session=uow.session)
        current = next((d for d in docs if d["_id"] == kid), None)
        if current is None:
            raise Conflict("the key changed state meanwhile; list the keys and try again")
        state = domain.KeyState(current["state"])
        if state is domain.KeyState.ACTIVE:
            raise Conflict("the key is signing again (a concurrent rotation); try again")
        await store.set_key_state(db, kid, from_state=state, to_state=domain.KeyState.REVOKED,
                                  fields={"revoked_at": now}, session=uow.session)
        if state is domain.KeyState.NEXT:
            upcoming = await new_key_document(domain.KeyState.NEXT, now, ring.wrapper)
            await store.insert_key(db, upcoming, session=uow.session)
        until = revocation.revoked_until(runtime, now)
        await store.record_revocation(db, "key", kid, reason="key_compromised", at=now,
                                      until=until, session=uow.session)
        uow.publish(events.SigningKeyRevoked(kid=kid, reason="key_compromised", until=until),
                    subject=kid)
        return current | {"state": str(domain.KeyState.REVOKED), "revoked_at": now}

    revoked = await runtime.transact(apply, actor=actor)
    await ring.reload()
    log.warning("revoked a signing key", extra={"kid": kid})
    return revoked
