"""Collections, indexes and queries of the auth database (``healthflow_auth``).

Documents (all times aware UTC):

``users``::

    {_id: <uuid4>, email, email_normalized (unique), full_name, name_folded,
     phone: E.164 | None, roles: [role], status: "active" | "inactive",
     password_hash: "$argon2id$…", created_at, updated_at, created_by,
     deactivated_at | None}

``sessions`` (one refresh-token family)::

    {_id: <uuid4>, user_id, client_id, status: "active" | "revoked",
     created_at, expires_at (absolute), generation: int (newest token),
     last_used_at, revoked_at, revoked_reason, client_ip, purge_at}

``refresh_tokens``::

    {_id: sha256-hex of the token, session_id, user_id, generation,
     issued_at, expires_at, used_at | None, purge_at}

``refused_logins`` (throttled token requests, counted per window)::

    {_id: "account:" | "ip:" + sha256-hex of the email or address (never the value),
     window_start, count: refusals in the window, purge_at}

``revocations`` (what every verifier must refuse, until its last token has expired)::

    {_id: "session:" | "user:" | "key:" + the id, kind: session | user | key, ref: the id,
     not_before (users only), reason, at (last recorded), until (purged then)}

``password_resets`` (one reset link each)::

    {_id: sha256-hex of the link's token (never the token), reset_id, user_id,
     created_at, expires_at, used_at | None, outcome: None | "used" | "superseded",
     purge_at}

``contact_links`` (links of a contact change: :mod:`healthflow.auth.contact`)::

    {_id: sha256-hex of the link's token, link_id, purpose: "email-change" | "contact-revert",
     user_id, email, email_normalized (the address the link moves the account to),
     created_at, expires_at, used_at | None, outcome: None | "used" | "superseded" | "taken",
     purge_at}

``mfa_factors`` (one second factor per user)::

    {_id: user_id, method: "totp", secret: envelope of the base32 TOTP key
     (healthflow.common.keywrap, bound to ``mfa_factors/<user_id>``; a clear base32 string
     in older releases), status: "pending" | "active", created_at,
     confirmed_at, last_step: int | None (newest RFC 6238 time step accepted),
     recovery_codes: {sha256-hex of a code: used_at | None}}

``mfa_challenges`` (a correct password waiting for its second factor)::

    {_id: sha256-hex of the challenge token, user_id, client_id, client_ip,
     enrolment: bool, attempts, created_at, expires_at, purge_at}

``signing_keys``::

    {_id: kid, alg: "EdDSA", state: next | active | retired | revoked | removed,
     private_key: envelope of the PKCS#8 DER (healthflow.common.keywrap) | None
     (dropped on removal), public_jwk: {...},
     created_at, activated_at, retired_at, remove_after, removed_at}

``person_keys`` (one per account; crypto-shredding, :mod:`healthflow.auth.personal`)::

    {_id: user_id, key_id: "pk-<16 hex>", key: envelope of the 32-byte AES-256 key
     (healthflow.common.keywrap, bound to ``person_keys/<user_id>``), created_at}
    — hard-deleted on erasure, after which nothing sealed under it opens
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.auth.domain import KeyState
from healthflow.common.mongo import Document
from healthflow.common.pagination import keyset_page

USERS = "users"
SESSIONS = "sessions"
REFRESH_TOKENS = "refresh_tokens"
SIGNING_KEYS = "signing_keys"
REFUSED_LOGINS = "refused_logins"
REVOCATIONS = "revocations"
PASSWORD_RESETS = "password_resets"  # noqa: S105 - a collection name
MFA_FACTORS = "mfa_factors"
CONTACT_LINKS = "contact_links"
MFA_CHALLENGES = "mfa_challenges"
PERSON_KEYS = "person_keys"

INDEXES = {
    USERS: [
        IndexModel([("email_normalized", ASCENDING)], unique=True, name="email_unique"),
        IndexModel([("created_at", ASCENDING), ("_id", ASCENDING)], name="created"),
        IndexModel([("roles", ASCENDING), ("created_at", ASCENDING)], name="roles"),
    ],
    SESSIONS: [
        IndexModel([("user_id", ASCENDING), ("status", ASCENDING)], name="user_status"),
        IndexModel([("purge_at", ASCENDING)], expireAfterSeconds=0, name="purge"),
    ],
    REFRESH_TOKENS: [
        IndexModel([("session_id", ASCENDING)], name="session"),
        IndexModel([("purge_at", ASCENDING)], expireAfterSeconds=0, name="purge"),
    ],
    REFUSED_LOGINS: [
        IndexModel([("purge_at", ASCENDING)], expireAfterSeconds=0, name="purge"),
    ],
    REVOCATIONS: [IndexModel([("until", ASCENDING)], expireAfterSeconds=0, name="purge")],
    PASSWORD_RESETS: [
        IndexModel([("user_id", ASCENDING), ("created_at", ASCENDING)], name="user_created"),
        IndexModel([("purge_at", ASCENDING)], expireAfterSeconds=0, name="purge"),
    ],
    CONTACT_LINKS: [
        IndexModel([("user_id", ASCENDING), ("purpose", ASCENDING)], name="user_purpose"),
        IndexModel([("purge_at", ASCENDING)], expireAfterSeconds=0, name="purge"),
    ],
    MFA_CHALLENGES: [
        IndexModel([("purge_at", ASCENDING)], expireAfterSeconds=0, name="purge"),
    ],
    SIGNING_KEYS: [
        # At most one signing key, whatever the number of replicas starting at once.
        IndexModel([("state", ASCENDING)], unique=True, name="one_active",
                   partialFilterExpression={"state": "active"}),
        IndexModel([("state", ASCENDING), ("created_at", ASCENDING)], name="state"),
    ],
}

Db = AsyncDatabase[Document]
Session = AsyncClientSession | None


# --------------------------------------------------------------------------- users


async def insert_user(db: Db, user: Document, *, session: Session) -> None:
    """Insert ``user``; raises ``DuplicateKeyError`` when the email is taken."""
    await db[USERS].insert_one(user, session=session)


async def get_user(db: Db, user_id: str, *, session: Session = None) -> Document | None:
    return await db[USERS].find_one({"_id": user_id}, session=session)


async def find_user_by_email(db: Db, email_normalized: str, *,
                             session: Session = None) -> Document | None:
    return await db[USERS].find_one({"email_normalized": email_normalized}, session=session)


async def update_user(db: Db, user_id: str, update: dict[str, Any], *,
                      session: Session) -> Document | None:
    """Apply ``update`` (a MongoDB update document) and return the user after it."""
    return await db[USERS].find_one_and_update(
        {"_id": user_id}, update, session=session, return_document=ReturnDocument.AFTER
    )


async def count_active_with_role(db: Db, role: str, *, session: Session) -> int:
    return await db[USERS].count_documents({"roles": role, "status": "active"}, session=session)


async def list_users(
    db: Db,
    *,
    email: str | None = None,
    name: str | None = None,
    role: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int,
) -> tuple[list[Document], str | None]:
    """Users in creation order matching every filter given, and the next cursor.

    ``email`` matches a prefix of the normalised email, ``name`` a
    case-insensitive substring of the full name.

    Raises:
        BadRequest: for a cursor this API did not issue.
    """
    query: dict[str, Any] = {}
    if email:
        query["email_normalized"] = {"$regex": "^" + re.escape(email.strip().casefold())}
    if name:
        query["name_folded"] = {"$regex": re.escape(name.strip().casefold())}
    if role:
        query["roles"] = role
    if status:
        query["status"] = status
    return await keyset_page(db[USERS], query, sort=["created_at", "_id"], cursor=cursor,
                             limit=limit)


# --------------------------------------------------------------------------- sessions


async def insert_session(db: Db, doc: Document, *, session: Session) -> None:
    await db[SESSIONS].insert_one(doc, session=session)


async def get_session(db: Db, session_id: str, *, session: Session = None) -> Document | None:
    return await db[SESSIONS].find_one({"_id": session_id}, session=session)


async def revoke_session(db: Db, session_id: str, *, reason: str, now: datetime,
                         session: Session) -> bool:
    """Revoke one active session; ``False`` when it was not active."""
    result = await db[SESSIONS].update_one(
        {"_id": session_id, "status": "active"},
        {"$set": {"status": "revoked", "revoked_at": now, "revoked_reason": reason}},
        session=session,
    )
    return result.modified_count == 1


async def revoke_user_sessions(db: Db, user_id: str, *, reason: str, now: datetime,
                               session: Session) -> int:
    """Revoke every active session of ``user_id``; returns how many."""
    result = await db[SESSIONS].update_many(
        {"user_id": user_id, "status": "active"},
        {"$set": {"status": "revoked", "revoked_at": now, "revoked_reason": reason}},
        session=session,
    )
    return result.modified_count


async def advance_session(db: Db, session_id: str, *, generation: int, now: datetime,
                          session: Session) -> None:
    await db[SESSIONS].update_one(
        {"_id": session_id},
        {"$set": {"generation": generation, "last_used_at": now}},
        session=session,
    )


# --------------------------------------------------------------------------- refresh tokens


async def insert_refresh_token(db: Db, doc: Document, *, session: Session) -> None:
    await db[REFRESH_TOKENS].insert_one(doc, session=session)


async def get_refresh_token(db: Db, token_hash: str, *,
                            session: Session = None) -> Document | None:
    return await db[REFRESH_TOKENS].find_one({"_id": token_hash}, session=session)


async def mark_refresh_used(db: Db, token_hash: str, *, now: datetime,
                            session: Session) -> bool:
    """Mark an unused token used; ``False`` when another request used it first."""
    result = await db[REFRESH_TOKENS].update_one(
        {"_id": token_hash, "used_at": None}, {"$set": {"used_at": now}}, session=session
    )
    return result.modified_count == 1


# --------------------------------------------------------------------------- signing keys


async def list_keys(db: Db, *, states: Sequence[str] | None = None,
                    session: Session = None) -> list[Document]:
    query: dict[str, Any] = {}
    if states is not None:
        query["state"] = {"$in": [str(s) for s in states]}
    return await db[SIGNING_KEYS].find(query, session=session).sort(
        "created_at", ASCENDING
    ).to_list()


async def keys_to_protect(db: Db, current_kek_id: str) -> list[Document]:
    """Keys with a clear ``private_pem`` (older releases) or an envelope whose KEK is
    not ``current_kek_id``."""
    return await db[SIGNING_KEYS].find({"$or": [
        {"private_pem": {"$type": "string"}},
        {"private_key.kek_id": {"$exists": True, "$ne": current_kek_id}},
    ]}).to_list()


async def insert_key(db: Db, doc: Document, *, session: Session) -> None:
    await db[SIGNING_KEYS].insert_one(doc, session=session)


async def set_key_state(db: Db, kid: str, *, from_state: KeyState, to_state: KeyState,
                        fields: dict[str, Any], session: Session) -> bool:
    """Move ``kid`` from ``from_state`` to ``to_state``; ``False`` if it was elsewhere."""
    update: dict[str, Any] = {"$set": {"state": str(to_state), **fields}}
    if to_state in (KeyState.REMOVED, KeyState.REVOKED):
        update["$set"]["private_key"] = None
        update["$unset"] = {"private_pem": ""}
    result = await db[SIGNING_KEYS].update_one(
        {"_id": kid, "state": str(from_state)}, update, session=session
    )
    return result.modified_count == 1


async def count_refusal(db: Db, key: str, now: datetime, window: float) -> int | None:
    """Count one throttled refusal of ``key`` (see ``refused_logins``).

    Returns ``None`` inside an open window (counted, nothing to publish), or, when this
    refusal opens a new window, the refusals counted after the event that opened the
    previous one (0 when there was none).
    """
    collection = db[REFUSED_LOGINS]
    purge_at = now + timedelta(seconds=2 * window)
    doc = await collection.find_one_and_update(
        {"_id": key, "window_start": {"$gt": now - timedelta(seconds=window)}},
        {"$inc": {"count": 1}, "$set": {"purge_at": purge_at}})
    if doc is not None:
        return None
    previous = await collection.find_one_and_replace(
        {"_id": key}, {"window_start": now, "count": 0, "purge_at": purge_at}, upsert=True)
    return int(previous["count"]) if previous else 0



# --------------------------------------------------------------------------- revocations


async def record_revocation(db: Db, kind: str, ref: str, *, reason: str, at: datetime,
                            until: datetime, not_before: datetime | None = None,
                            session: Session) -> None:
    """Upsert the revocation of ``kind`` (session | user | key) ``ref`` recorded ``at``; a
    later one of the same ``ref`` moves ``not_before``, ``at`` and ``until`` forward."""
    update: dict[str, Any] = {"$set": {"kind": kind, "ref": ref, "reason": reason},
                              "$max": {"until": until, "at": at}}
    if not_before is not None:
        update["$max"]["not_before"] = not_before
    await db[REVOCATIONS].update_one({"_id": f"{kind}:{ref}"}, update, upsert=True,
                                     session=session)


async def current_revocations(db: Db, now: datetime,
                              since: datetime | None = None) -> list[Document]:
    """Every revocation whose ``until`` is after ``now`` (the TTL monitor purges late),
    recorded at or after ``since`` when given."""
    query: dict[str, Any] = {"until": {"$gt": now}}
    if since is not None:
        query["at"] = {"$gte": since}
    return await db[REVOCATIONS].find(query).to_list()


async def user_not_before(db: Db, user_id: str) -> datetime | None:
    """The "not before" of ``user_id``'s tokens (``None`` when none is recorded)."""
    doc = await db[REVOCATIONS].find_one({"_id": f"user:{user_id}"}, {"not_before": 1})
    return None if doc is None else doc.get("not_before")


# --------------------------------------------------------------------------- password resets


async def count_resets_since(db: Db, user_id: str, since: datetime, *,
                             session: Session = None) -> int:
    """Reset links issued for ``user_id`` at or after ``since``."""
    return await db[PASSWORD_RESETS].count_documents(
        {"user_id": user_id, "created_at": {"$gte": since}}, session=session)


async def insert_reset(db: Db, doc: Document, *, session: Session) -> None:
    """Store a new reset link; earlier unused links of the same user are void from now."""
    await db[PASSWORD_RESETS].update_many(
        {"user_id": doc["user_id"], "used_at": None},
        {"$set": {"used_at": doc["created_at"], "outcome": "superseded"}}, session=session)
    await db[PASSWORD_RESETS].insert_one(doc, session=session)


async def use_reset(db: Db, token_hash: str, *, now: datetime,
                    session: Session) -> Document | None:
    """Mark the unused, unexpired link ``token_hash`` used and return it; ``None`` when
    there is none (unknown, used, superseded or expired): a link works once."""
    return await db[PASSWORD_RESETS].find_one_and_update(
        {"_id": token_hash, "used_at": None, "expires_at": {"$gt": now}},
        {"$set": {"used_at": now, "outcome": "used"}}, session=session,
        return_document=ReturnDocument.AFTER)


async def find_usable_reset(db: Db, token_hash: str, *, now: datetime) -> Document | None:
    """The unused, unexpired link ``token_hash`` (not marked: :func:`use_reset` does)."""
    return await db[PASSWORD_RESETS].find_one(
        {"_id": token_hash, "used_at": None, "expires_at": {"$gt": now}})


# --------------------------------------------------------------------------- contact links


async def cancel_contact_links(db: Db, user_id: str, purposes: list[str], *, now: datetime,
                               session: Session, after: datetime | None = None) -> None:
    """Void ``user_id``'s unused ``purposes`` contact links (created after ``after``)."""
    query: Document = {"user_id": user_id, "purpose": {"$in": purposes}, "used_at": None}
    if after is not None:
        query["created_at"] = {"$gt": after}
    await db[CONTACT_LINKS].update_many(
        query, {"$set": {"used_at": now, "outcome": "cancelled"}}, session=session)


# --------------------------------------------------------------------------- second factor


async def get_factor(db: Db, user_id: str, *, session: Session = None) -> Document | None:
    return await db[MFA_FACTORS].find_one({"_id": user_id}, session=session)


async def put_pending_factor(db: Db, doc: Document, *, session: Session) -> bool:
    """Store ``doc`` (status ``pending``) unless an active factor exists; ``False`` then."""
    result = await db[MFA_FACTORS].replace_one(
        {"_id": doc["_id"], "status": {"$ne": "active"}}, doc, session=session)
    if result.matched_count == 1:
        return True
    if await db[MFA_FACTORS].find_one({"_id": doc["_id"]}, session=session) is not None:
        return False
    await db[MFA_FACTORS].insert_one(doc, session=session)
    return True


async def activate_factor(db: Db, user_id: str, *, step: int, code_hashes: Sequence[str],
                          now: datetime, session: Session) -> bool:
    """Pending → active, with the first accepted ``step`` and the recovery codes' hashes."""
    result = await db[MFA_FACTORS].update_one(
        {"_id": user_id, "status": "pending"},
        {"$set": {"status": "active", "confirmed_at": now, "last_step": step,
                  "recovery_codes": dict.fromkeys(code_hashes)}},
        session=session)
    return result.modified_count == 1


async def advance_step(db: Db, user_id: str, step: int, *, session: Session) -> bool:
    """Record ``step`` as used; ``False`` when it (or a later one) already was (a replay)."""
    result = await db[MFA_FACTORS].update_one(
        {"_id": user_id, "status": "active", "last_step": {"$lt": step}},
        {"$set": {"last_step": step}}, session=session)
    return result.modified_count == 1


async def use_recovery_code(db: Db, user_id: str, code_hash: str, *, now: datetime,
                            session: Session) -> Document | None:
    """Mark the unused recovery code ``code_hash`` used; the factor after, or ``None``."""
    field = f"recovery_codes.{code_hash}"  # a hex digest: a safe field name
    return await db[MFA_FACTORS].find_one_and_update(
        {"_id": user_id, "status": "active", field: {"$exists": True, "$eq": None}},
        {"$set": {field: now}}, session=session, return_document=ReturnDocument.AFTER)


async def factors_to_protect(db: Db, current_kek_id: str) -> list[Document]:
    """Factors whose TOTP key is clear (older releases) or wrapped with a KEK other than
    ``current_kek_id``."""
    return await db[MFA_FACTORS].find({"$or": [
        {"secret": {"$type": "string"}},
        {"secret.kek_id": {"$exists": True, "$ne": current_kek_id}},
    ]}).to_list()


async def delete_factor(db: Db, user_id: str, *, session: Session) -> bool:
    result = await db[MFA_FACTORS].delete_one({"_id": user_id}, session=session)
    return result.deleted_count == 1


async def insert_challenge(db: Db, doc: Document, *, session: Session = None) -> None:
    await db[MFA_CHALLENGES].insert_one(doc, session=session)


async def get_challenge(db: Db, token_hash: str, *, now: datetime) -> Document | None:
    """The live challenge ``token_hash`` (not expired)."""
    return await db[MFA_CHALLENGES].find_one({"_id": token_hash, "expires_at": {"$gt": now}})


async def count_challenge_attempt(db: Db, token_hash: str) -> None:
    await db[MFA_CHALLENGES].update_one({"_id": token_hash}, {"$inc": {"attempts": 1}})


async def take_challenge(db: Db, token_hash: str, *, session: Session) -> bool:
    """Remove the challenge (it serves one login); ``False`` when another request did."""
    result = await db[MFA_CHALLENGES].delete_one({"_id": token_hash}, session=session)
    return result.deleted_count == 1


# --------------------------------------------------------------------------- person keys


async def insert_person_key(db: Db, doc: Document, *, session: Session) -> None:
    await db[PERSON_KEYS].insert_one(doc, session=session)


async def get_person_key(db: Db, user_id: str) -> Document | None:
    return await db[PERSON_KEYS].find_one({"_id": user_id})


async def delete_person_key(db: Db, user_id: str, *, session: Session) -> bool:
    """Hard-delete ``user_id``'s person key; whether there was one."""
    result = await db[PERSON_KEYS].delete_one({"_id": user_id}, session=session)
    return result.deleted_count == 1
