"""Guests: people the doctor invites into a consultation (an interpreter, a family member,
a second clinician) who have no HealthFlow account.

* The doctor invites (``teleconsult.guest_invited``) and gets a **single-use link**
  holding a random token (256 bits; only its SHA-256 is stored), valid until the room
  closes.
* Opening the link **redeems** it once: the token is exchanged for a guest session
  secret (also stored only hashed) that the guest's app sends as ``X-Guest-Token`` to
  the guest routes; a second use of the link is refused (410 ``guest-link-spent``).
* A guest is a participant like the others but must be admitted by the doctor, sees
  and is seen only in that room, and can be removed for good.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid

from healthflow.common.auth import Principal
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.problems import NotFound, Unauthorized
from healthflow.common.service import ServiceRuntime
from healthflow.teleconference import events, store
from healthflow.teleconference.access import as_doctor, room_of, window_of
from healthflow.teleconference.domain import GuestKind, GuestLimit, LinkSpent, check_status
from healthflow.teleconference.events import ids_of, subject_of
from healthflow.teleconference.settings import Settings

GUEST_PREFIX = "guest:"
MAX_INVITATIONS = 8
"""Invitations a room takes in all (Janus's room takes six publishers: the patient, the
doctor and four guests, with links to spare for a lost one)."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def invite(runtime: ServiceRuntime, principal: Principal, room_id: str,
                 kind: GuestKind) -> tuple[Document, str]:
    """A single-use invitation of the room's doctor; ``(invitation, link token)``; the
    token is never stored and shown only now.

    Raises:
        Forbidden: (403) not the doctor. RoomClosed: (409) ended or cancelled.
        GuestLimit: (409) the room has had :data:`MAX_INVITATIONS` invitations.
    """
    settings: Settings = runtime.settings  # type: ignore[assignment]
    token = secrets.token_urlsafe(32)
    now = utcnow()

    async def write(uow: UnitOfWork) -> Document:
        room, role = await room_of(runtime, principal, room_id, session=uow.session)
        as_doctor(role)
        check_status(room["status"])
        if await uow.db[store.INVITATIONS].count_documents(
                {"room_id": room_id}, session=uow.session) >= MAX_INVITATIONS:
            raise GuestLimit(f"a consultation takes at most {MAX_INVITATIONS} invitations",
                             limit=MAX_INVITATIONS)
        doc: Document = {"_id": str(uuid.uuid4()), "room_id": room_id, "kind": kind.value,
                         "token_hash": digest(token), "session_hash": None,
                         "created_by": principal.subject, "created_at": now,
                         "expires_at": window_of(settings, room).closes_at,
                         "redeemed_at": None}
        await uow.db[store.INVITATIONS].insert_one(doc, session=uow.session)
        uow.publish(events.TeleconsultGuestInvited(
            **ids_of(room), invitation_id=doc["_id"], kind=kind.value,
            invited_by=principal.subject, expires_at=doc["expires_at"]),
            subject=subject_of(room_id), patientid=room["patient_id"])
        return doc

    return await runtime.transact(write, actor=principal.actor), token


async def redeem(runtime: ServiceRuntime, token: str) -> tuple[Document, str]:
    """Exchanges a link's token, once, for a guest session secret; ``(invitation,
    secret)``.

    Raises:
        NotFound: (404) no such link. LinkSpent: (410) used already, or its room closed.
    """
    now = utcnow()
    secret = secrets.token_urlsafe(32)
    found = await runtime.db[store.INVITATIONS].find_one({"token_hash": digest(token)})
    if found is None:
        raise NotFound("no such guest link")
    if found["expires_at"] <= now:
        raise LinkSpent("this guest link has expired: the consultation's room has closed")
    claimed = await runtime.db[store.INVITATIONS].update_one(
        {"_id": found["_id"], "redeemed_at": None},
        {"$set": {"redeemed_at": now, "session_hash": digest(secret)}})
    if claimed.modified_count != 1:
        raise LinkSpent("this guest link has been used already; ask the doctor for a new one")
    return found, secret


async def principal_of(runtime: ServiceRuntime, secret: str | None) -> Principal:
    """The guest holding session ``secret``, as a principal scoped to their one room
    (``claims["room_id"]``) that may only join it.

    Raises:
        Unauthorized: (401) no, an unknown, or an expired guest session.
    """
    if not secret:
        raise Unauthorized("a guest session (X-Guest-Token) is required",
                           headers={"WWW-Authenticate": 'Guest realm="healthflow"'})
    found = await runtime.db[store.INVITATIONS].find_one({"session_hash": digest(secret)})
    if found is None or found["expires_at"] <= utcnow():
        raise Unauthorized("the guest session is unknown or has expired",
                           headers={"WWW-Authenticate": 'Guest realm="healthflow"'})
    return Principal(subject=GUEST_PREFIX + found["_id"], roles=frozenset({"guest"}),
                     permissions=frozenset({str(Permission.TELECONSULTATIONS_JOIN)}),
                     token_id=found["_id"], token="",
                     claims={"room_id": found["room_id"], "kind": found["kind"]})
