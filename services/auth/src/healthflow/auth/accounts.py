"""Account use cases: register, create staff, activate, deactivate, roles.

Each runs in one transaction through ``runtime.transact`` and records its
event there (``user.registered``, ``user.activated``, ``user.deactivated``,
``user.role_changed``), so the write and the event commit together. Routes,
the CLI and :func:`healthflow.auth.cli.ensure_first_admin` call these.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from pymongo.errors import DuplicateKeyError

from healthflow.auth import store
from healthflow.auth.domain import normalize_email
from healthflow.auth.events import UserActivated, UserDeactivated, UserRegistered, UserRoleChanged
from healthflow.auth.passwords import PasswordHasher
from healthflow.common.errors import Conflict, NotFound
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Role
from healthflow.common.service import ServiceRuntime


async def create_account(
    runtime: ServiceRuntime,
    hasher: PasswordHasher,
    *,
    email: str,
    password: str,
    full_name: str,
    phone: str | None,
    roles: Iterable[str],
    actor: str | None,
    self_registered: bool,
) -> Document:
    """Create an active account and publish ``user.registered``.

    The password must already satisfy the policy (the request models check
    it); it is hashed here. Returns the stored user document.

    Raises:
        Conflict: an account with this email (compared case-insensitively) exists.
    """
    password_hash = await hasher.hash(password)
    now = utcnow()
    user_id = str(uuid.uuid4())
    user: Document = {
        "_id": user_id,
        "email": email.strip(),
        "email_normalized": normalize_email(email),
        "full_name": full_name,
        "name_folded": full_name.casefold(),
        "phone": phone,
        "roles": sorted({str(r) for r in roles}),
        "status": "active",
        "password_hash": password_hash,
        "created_at": now,
        "updated_at": now,
        "created_by": actor or user_id,
        "deactivated_at": None,
    }

    async def apply(uow: UnitOfWork) -> None:
        try:
            await store.insert_user(runtime.db, user, session=uow.session)
        except DuplicateKeyError:
            raise Conflict("an account with this email already exists") from None
        uow.publish(
            UserRegistered(
                user_id=user_id, email=user["email"], full_name=full_name, phone=phone,
                roles=user["roles"], self_registered=self_registered,
            ),
            subject=user_id,
            actor=actor or user_id,
        )

    await runtime.transact(apply, actor=actor or user_id)
    return user


async def get_account(runtime: ServiceRuntime, user_id: str) -> Document:
    """The user ``user_id``.

    Raises:
        NotFound: no such user.
    """
    user = await store.get_user(runtime.db, user_id)
    if user is None:
        raise NotFound(f"no user has the id {user_id}")
    return user


async def _ensure_other_admin_remains(runtime: ServiceRuntime, user: Document,
                                      uow: UnitOfWork) -> None:
    if Role.ADMIN in user["roles"] and user["status"] == "active":
        admins = await store.count_active_with_role(runtime.db, Role.ADMIN, session=uow.session)
        if admins <= 1:
            raise Conflict("this is the last active admin; make another admin first")


async def deactivate(runtime: ServiceRuntime, user_id: str, *, actor: str) -> Document:
    """Deactivate ``user_id`` and revoke all their sessions; publish ``user.deactivated``.

    Idempotent: an inactive user is returned unchanged, without an event.

    Raises:
        NotFound: no such user.
        Conflict: the user is the last active admin.
    """

    async def apply(uow: UnitOfWork) -> Document:
        user = await store.get_user(runtime.db, user_id, session=uow.session)
        if user is None:
            raise NotFound(f"no user has the id {user_id}")
        if user["status"] == "inactive":
            return user
        await _ensure_other_admin_remains(runtime, user, uow)
        now = utcnow()
        updated = await store.update_user(
            runtime.db, user_id,
            {"$set": {"status": "inactive", "deactivated_at": now, "updated_at": now}},
            session=uow.session,
        )
        revoked = await store.revoke_user_sessions(
            runtime.db, user_id, reason="user_deactivated", now=now, session=uow.session
        )
        uow.publish(UserDeactivated(user_id=user_id, sessions_revoked=revoked), subject=user_id)
        assert updated is not None
        return updated

    return await runtime.transact(apply, actor=actor)


async def activate(runtime: ServiceRuntime, user_id: str, *, actor: str) -> Document:
    """Let ``user_id`` log in again; publish ``user.activated`` (idempotent).

    Raises:
        NotFound: no such user.
    """

    async def apply(uow: UnitOfWork) -> Document:
        user = await store.get_user(runtime.db, user_id, session=uow.session)
        if user is None:
            raise NotFound(f"no user has the id {user_id}")
        if user["status"] == "active":
            return user
        now = utcnow()
        updated = await store.update_user(
            runtime.db, user_id,
            {"$set": {"status": "active", "deactivated_at": None, "updated_at": now}},
            session=uow.session,
        )
        uow.publish(UserActivated(user_id=user_id), subject=user_id)
        assert updated is not None
        return updated

    return await runtime.transact(apply, actor=actor)


async def change_role(runtime: ServiceRuntime, user_id: str, role: Role, *, assign: bool,
                      actor: str) -> Document:
    """Give (``assign``) or take ``role`` from ``user_id``; publish ``user.role_changed``.

    Idempotent: no change, no event. Tokens already issued keep their roles
    until they expire; the next refresh carries the new set.

    Raises:
        NotFound: no such user.
        Conflict: removing ``admin`` from the last active admin.
    """

    async def apply(uow: UnitOfWork) -> Document:
        user = await store.get_user(runtime.db, user_id, session=uow.session)
        if user is None:
            raise NotFound(f"no user has the id {user_id}")
        has = role in user["roles"]
        if has == assign:
            return user
        if not assign and role is Role.ADMIN:
            await _ensure_other_admin_remains(runtime, user, uow)
        operator = "$addToSet" if assign else "$pull"
        updated = await store.update_user(
            runtime.db, user_id,
            {operator: {"roles": str(role)}, "$set": {"updated_at": utcnow()}},
            session=uow.session,
        )
        assert updated is not None
        uow.publish(
            UserRoleChanged(user_id=user_id, role=str(role),
                            change="assigned" if assign else "removed",
                            roles=sorted(updated["roles"])),
            subject=user_id,
        )
        return updated

    return await runtime.transact(apply, actor=actor)
