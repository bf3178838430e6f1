"""Collections, indexes and queries of the audit database.

``entries`` — one document per log entry, never updated or deleted::

    {_id: <seq: int, 0-based>, event_id: str (unique), type: str, subject: str | None,
     actor: str | None, patientid: str | None, source: str, time: datetime,
     envelope: {...CloudEvents JSON...}, prev_hash: str, hash: str, appended_at: datetime}

``chain`` — one document, the head of the chain and the size of the Merkle tree::

    {_id: "head", seq: int (-1 while empty), hash: str (64 hex), updated_at: datetime,
     tree_size: int (leaves hashed into ``tree``; absent in a log kept before the tree),
     frontier: [str (64 hex), ...], frontier_size: int}

``frontier`` copies the hashes of the tree's right edge (:func:`merkle.frontier`
of ``frontier_size`` leaves, already stored in ``tree``) so an append need not
query them; it is used only while ``frontier_size == tree_size`` (a catch-up
outside a transaction moves ``tree_size`` alone, and the next append then reads
the edge from ``tree``).

``tree_size`` trails ``seq + 1`` while the tree catches up (entries appended by a
replica that keeps no tree, a log kept before it); it moves in the transaction
that stores the subtrees, or after them (a catch-up outside a transaction: the
subtrees are a function of immutable entries, so storing one twice is harmless).

``tree`` — the Merkle tree's complete subtrees (:mod:`healthflow.audit.merkle`) of
level 1 and up, one document each, never changed::

    {_id: "<level>:<index>", level: int, index: int, hash: str (64 hex)}

A leaf (level 0, index ``seq``) is not stored: its hash is
:func:`merkle.entry_leaf_hash` of entry ``seq``'s ``hash``, read from ``entries``
(:func:`read_subtrees`). Leaf documents kept by an older version are ignored.

``checkpoints`` — every signed checkpoint (:mod:`healthflow.audit.checkpoints`), never
changed but for where it was exported::

    {_id: <tree size: int>, root: str (64 hex), note: str (the signed note),
     key_id: str (8 hex), signed_at: datetime, blob_key: str | None, file: str | None}

``signing_keys`` — only when no ``AUDIT_CHECKPOINT_SIGNING_KEY`` is configured (local
runs)::

    {_id: "checkpoint", private_key: envelope of the 32-byte Ed25519 seed
     (healthflow.common.keywrap, bound to ``audit`` and ``signing_keys/checkpoint``),
     created_at}

An older release kept ``seed: str (base64url)`` in clear; it is wrapped at start
(:func:`healthflow.common.keywrap.protect_kept_key`).

Appends are serialized by the head: :func:`healthflow.audit.service.append` reads it
and moves it (:func:`move_head`, a conditional update) in the same transaction as
the entry inserts. Two replicas
appending at once conflict on the head document (the server aborts one with a
``TransientTransactionError`` and the transaction is retried whole), and the
unique ``_id`` (= seq) refuses a second entry with the same number should the
head ever be bypassed. Times are aware UTC with millisecond precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from healthflow.audit import domain, merkle
from healthflow.common.mongo import Document, utcnow

ENTRIES = "entries"
CHAIN = "chain"
TREE = "tree"
CHECKPOINTS = "checkpoints"
SIGNING_KEYS = "signing_keys"
SIGNING_KEY_ID = "checkpoint"
HEAD_ID = "head"

INDEXES = {
    # With _id (seq: the chain's order, verify/export ranges, proofs' leaves, the
    # cursors), seven per entry. Each serves a query of its own and none is a prefix
    # of another; the filters are equalities paged by seq, hence (field, _id).
    ENTRIES: [
        # The dedupe key of every append (logged_event_ids) and the last guard
        # against a second entry of one event (no inbox record is written).
        IndexModel([("event_id", ASCENDING)], unique=True, name="event_id_unique"),
        # ?type= and ?category= ($in of a named set): search, /report/*, bursts.
        IndexModel([("type", ASCENDING), ("_id", DESCENDING)]),
        # ?subject= (one resource's history).
        IndexModel([("subject", ASCENDING), ("_id", DESCENDING)]),
        # ?actor= ("what did user Y do in a period").
        IndexModel([("actor", ASCENDING), ("_id", DESCENDING)]),
        # ?patient= and /patient-access (a patient's own report).
        IndexModel([("patientid", ASCENDING), ("_id", DESCENDING)]),
        # ?from&to with no other filter (a period's report): event time, not seq order.
        IndexModel([("time", ASCENDING)]),
    ],
    CHECKPOINTS: [IndexModel([("blob_key", ASCENDING)])],
}


@dataclass(frozen=True)
class EntryFilter:
    """Equality filters on copied envelope attributes; ``time`` in ``[since, until)``;
    ``types``: any of these types (and ``type`` when both are given)."""

    type: str | None = None
    types: frozenset[str] | None = None
    subject: str | None = None
    actor: str | None = None
    patientid: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def query(self) -> Document:
        query: Document = {}
        for name in ("type", "subject", "actor", "patientid"):
            value = getattr(self, name)
            if value is not None:
                query[name] = value
        if self.types is not None:
            allowed = self.types if self.type is None else self.types & {self.type}
            query["type"] = {"$in": sorted(allowed)}
        if self.since is not None or self.until is not None:
            window: Document = {}
            if self.since is not None:
                window["$gte"] = self.since
            if self.until is not None:
                window["$lt"] = self.until
            query["time"] = window
        return query


def to_document(entry: domain.Entry) -> Document:
    return {
        "_id": entry.seq, "event_id": entry.event_id, "type": entry.type,
        "subject": entry.subject, "actor": entry.actor, "patientid": entry.patientid,
        "source": entry.source, "time": entry.time, "envelope": entry.envelope,
        "prev_hash": entry.prev_hash, "hash": entry.hash, "appended_at": entry.appended_at,
    }


def entry_view(document: Document) -> dict[str, Any]:
    """A stored document with ``_id`` renamed ``seq`` (the shape domain and API use)."""
    view = {key: value for key, value in document.items() if key != "_id"}
    view["seq"] = document.get("_id")
    return view


async def ensure_head(db: AsyncDatabase[Document]) -> None:
    """Create the genesis head if there is none (idempotent; safe for concurrent replicas)."""
    genesis = domain.ChainHead.genesis()
    with contextlib.suppress(DuplicateKeyError):  # another replica created it first
        await db[CHAIN].update_one(
            {"_id": HEAD_ID},
            {"$setOnInsert": {"seq": genesis.seq, "hash": genesis.hash, "tree_size": 0,
                              "updated_at": utcnow()}},
            upsert=True,
        )


async def read_head(db: AsyncDatabase[Document],
                    session: AsyncClientSession | None = None) -> domain.ChainHead:
    doc = await db[CHAIN].find_one({"_id": HEAD_ID}, session=session)
    if doc is None:
        return domain.ChainHead.genesis()
    return domain.ChainHead(seq=int(doc["seq"]), hash=str(doc["hash"]))


async def read_chain(db: AsyncDatabase[Document], session: AsyncClientSession | None = None
                     ) -> tuple[domain.ChainHead, int]:
    """The head and the tree's size (0 when the head does not record one)."""
    doc = await db[CHAIN].find_one({"_id": HEAD_ID}, session=session)
    if doc is None:
        return domain.ChainHead.genesis(), 0
    head = domain.ChainHead(seq=int(doc["seq"]), hash=str(doc["hash"]))
    return head, int(doc.get("tree_size", 0))


async def read_append_state(db: AsyncDatabase[Document],
                            session: AsyncClientSession | None = None
                            ) -> tuple[domain.ChainHead, int, list[bytes] | None]:
    """The head, the tree's size and its frontier hashes as the head copies them
    (``None`` when it holds none for that size: read them from ``tree``)."""
    doc = await db[CHAIN].find_one({"_id": HEAD_ID}, session=session)
    if doc is None:
        return domain.ChainHead.genesis(), 0, None
    head = domain.ChainHead(seq=int(doc["seq"]), hash=str(doc["hash"]))
    size = int(doc.get("tree_size", 0))
    edge = doc.get("frontier")
    if doc.get("frontier_size") != size or not isinstance(edge, list) \
            or len(edge) != size.bit_count():
        return head, size, None
    return head, size, [bytes.fromhex(h) for h in edge]


async def logged_event_ids(db: AsyncDatabase[Document], session: AsyncClientSession,
                           event_ids: Sequence[str]) -> set[str]:
    """Those of ``event_ids`` that already have an entry."""
    logged = db[ENTRIES].find({"event_id": {"$in": list(event_ids)}}, {"event_id": 1},
                              session=session)
    return {doc["event_id"] async for doc in logged}


async def move_head(db: AsyncDatabase[Document], session: AsyncClientSession,
                    head: domain.ChainHead, last: domain.Entry, appended_at: datetime, *,
                    tree_size: int, frontier: Sequence[bytes] | None = None) -> bool:
    """Move the head from ``head`` to ``last`` (and the tree to ``tree_size`` leaves, whose
    frontier hashes are ``frontier`` when given) if it is still at ``head``; ``False`` if not.

    The genesis head is created by the move when it does not exist yet.
    """
    moved_to: Document = {"seq": last.seq, "hash": last.hash, "updated_at": appended_at,
                          "tree_size": tree_size}
    if frontier is not None:
        moved_to |= {"frontier": [h.hex() for h in frontier], "frontier_size": tree_size}
    moved = await db[CHAIN].update_one(
        {"_id": HEAD_ID, "seq": head.seq, "hash": head.hash},
        {"$set": moved_to},
        upsert=head.empty,
        session=session,
    )
    return moved.matched_count > 0 or moved.upserted_id is not None


async def insert_entries(db: AsyncDatabase[Document], session: AsyncClientSession,
                         entries: Sequence[domain.Entry]) -> None:
    await db[ENTRIES].insert_many([to_document(e) for e in entries], session=session)


async def find_entries(db: AsyncDatabase[Document], where: EntryFilter, *,
                       before_seq: int | None, limit: int) -> list[Document]:
    """Entries matching ``where``, newest first (descending ``seq``), below ``before_seq``."""
    query = where.query()
    if before_seq is not None:
        query["_id"] = {"$lt": before_seq}
    cursor = db[ENTRIES].find(query).sort("_id", DESCENDING).limit(limit)
    return [entry_view(doc) async for doc in cursor]


async def get_entry(db: AsyncDatabase[Document], seq: int) -> Document | None:
    doc = await db[ENTRIES].find_one({"_id": seq})
    return entry_view(doc) if doc is not None else None


async def stored_hash(db: AsyncDatabase[Document], seq: int) -> str | None:
    """The stored ``hash`` of entry ``seq``; ``None`` when it is missing or not a string."""
    doc = await db[ENTRIES].find_one({"_id": seq}, {"hash": 1})
    value = doc.get("hash") if doc is not None else None
    return value if isinstance(value, str) else None


async def entries_between(db: AsyncDatabase[Document], first_seq: int, last_seq: int,
                          *, batch_size: int = 500, session: AsyncClientSession | None = None
                          ) -> AsyncIterator[Document]:
    """Entries with ``first_seq <= seq <= last_seq`` in ascending order, streamed."""
    cursor = (
        db[ENTRIES].find({"_id": {"$gte": first_seq, "$lte": last_seq}}, session=session)
        .sort("_id", ASCENDING)
        .batch_size(batch_size)
    )
    async for doc in cursor:
        yield entry_view(doc)


def _node_key(node: merkle.NodeId) -> str:
    return f"{node[0]}:{node[1]}"


async def read_subtrees(db: AsyncDatabase[Document], nodes: Collection[merkle.NodeId],
                        session: AsyncClientSession | None = None
                        ) -> dict[merkle.NodeId, bytes]:
    """The hashes of ``nodes``: subtrees from ``tree``, leaves from their entries' ``hash``
    (one query each, only when needed); absent ones are left out."""
    found: dict[merkle.NodeId, bytes] = {}
    leaves = [index for level, index in nodes if level == 0]
    if leaves:
        entries = db[ENTRIES].find({"_id": {"$in": leaves}}, {"hash": 1}, session=session)
        async for doc in entries:
            found[(0, int(doc["_id"]))] = merkle.entry_leaf_hash(doc["hash"])
    keys = [_node_key(n) for n in nodes if n[0] > 0]
    if keys:
        subtrees = db[TREE].find({"_id": {"$in": keys}}, session=session)
        async for doc in subtrees:
            found[(int(doc["level"]), int(doc["index"]))] = bytes.fromhex(doc["hash"])
    return found


async def insert_subtrees(db: AsyncDatabase[Document], made: dict[merkle.NodeId, bytes],
                          session: AsyncClientSession | None = None, *,
                          tolerate_existing: bool = False) -> None:
    """Store the subtrees of ``made`` above the leaves (a leaf's hash is its entry's); with
    ``tolerate_existing`` (a catch-up racing another replica's), subtrees already stored
    are left as they are (upserts, no error)."""
    docs = [{"_id": _node_key(node), "level": node[0], "index": node[1], "hash": digest.hex()}
            for node, digest in made.items() if node[0] > 0]
    if not docs:
        return
    if not tolerate_existing:
        await db[TREE].insert_many(docs, session=session)
        return
    await db[TREE].bulk_write([UpdateOne({"_id": doc["_id"]}, {"$setOnInsert": doc}, upsert=True)
                               for doc in docs], ordered=False, session=session)


async def tree_size(db: AsyncDatabase[Document]) -> int:
    """How many leaves the stored tree has (the head's ``tree_size``)."""
    return (await read_chain(db))[1]


async def advance_tree_size(db: AsyncDatabase[Document], size: int) -> None:
    """Record that the tree holds ``size`` leaves, unless it records more already."""
    await db[CHAIN].update_one({"_id": HEAD_ID}, {"$max": {"tree_size": size}})


async def insert_checkpoint(db: AsyncDatabase[Document], document: Document) -> bool:
    """Keep a checkpoint; ``False`` when one of that tree size is kept already."""
    try:
        await db[CHECKPOINTS].insert_one(document)
    except DuplicateKeyError:
        return False
    return True


async def latest_checkpoint(db: AsyncDatabase[Document]) -> Document | None:
    return await db[CHECKPOINTS].find_one({}, sort=[("_id", DESCENDING)])


async def get_checkpoint(db: AsyncDatabase[Document], size: int) -> Document | None:
    return await db[CHECKPOINTS].find_one({"_id": size})


async def unexported_checkpoints(db: AsyncDatabase[Document], limit: int = 100
                                 ) -> list[Document]:
    """Checkpoints not yet written to the blob store, oldest first."""
    cursor = db[CHECKPOINTS].find({"blob_key": None}).sort("_id", ASCENDING).limit(limit)
    return [doc async for doc in cursor]


async def mark_exported(db: AsyncDatabase[Document], size: int, **where: str) -> None:
    """Record where checkpoint ``size`` was written (``blob_key=``, ``file=``)."""
    await db[CHECKPOINTS].update_one({"_id": size}, {"$set": where})


async def entries_for_report(db: AsyncDatabase[Document], where: EntryFilter, *,
                             below_seq: int, limit: int, after_seq: int = -1) -> list[Document]:
    """Entries matching ``where`` with ``after_seq < seq < below_seq``, ascending, at most
    ``limit``."""
    query = where.query()
    query["_id"] = {"$gt": after_seq, "$lt": below_seq}
    cursor = db[ENTRIES].find(query).sort("_id", ASCENDING).limit(limit)
    return [entry_view(doc) async for doc in cursor]
