"""Use cases of the audit service: append events to the chain; search, read and verify it.

The handlers call :func:`append` inside the consumer's transaction (one event,
or a group of concurrent deliveries: :class:`~healthflow.audit.handlers.GroupCommitConsumer`);
the routes call the read side. The chain arithmetic is :mod:`healthflow.audit.domain`,
the queries :mod:`healthflow.audit.store`. Nothing here publishes an event (see
:mod:`healthflow.audit.events`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from healthflow.audit import domain, merkle, store, tree
from healthflow.common.errors import BadRequest, NotFound, UnprocessableContent
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.common.pagination import decode_cursor, encode_cursor
from healthflow.common.service import ServiceRuntime


class ChainMoved(RuntimeError):
    """The head changed between reading and updating it (retry the whole append)."""


async def append(uow: UnitOfWork, events: Sequence[CloudEvent | domain.PreparedEvent],
                 appended_at: datetime) -> list[domain.Entry]:
    """Append the ``events`` not logged yet, in order, inside ``uow``'s transaction.

    Events whose id is already in the log, or repeated within ``events``, are
    skipped. Returns the new entries (empty when every event was a duplicate).
    The entries also become the next leaves of the Merkle tree, after up to
    ``tree.CATCH_UP_MAX`` entries it lacks (:func:`healthflow.audit.tree.catch_up`);
    a tree still behind, or stopped at a gap, never fails the append. Round trips:
    duplicate check, head read (with the tree's frontier; the frontier is read
    from ``tree`` only when the head holds none for the tree's size, and missing
    entries only when the tree is behind), head update (with the new frontier),
    entry insert, subtree insert.

    Raises:
        domain.UnhashableEvent: an event cannot be canonicalized (RFC 8785).
        ChainMoved: the head moved under this transaction (retry it whole).
        pymongo.errors.PyMongoError: write conflicts (``TransientTransactionError``)
            and other database failures.
    """
    fresh: dict[str, CloudEvent | domain.PreparedEvent] = {}
    for item in events:
        fresh.setdefault(item.event.id if isinstance(item, domain.PreparedEvent) else item.id,
                         item)
    if not fresh:
        return []
    for event_id in await store.logged_event_ids(uow.db, uow.session, list(fresh)):
        fresh.pop(event_id, None)
    if not fresh:
        return []
    head, size, edge = await store.read_append_state(uow.db, uow.session)
    entries = domain.chain(head, list(fresh.values()), appended_at)
    if edge is None:  # the head holds no frontier for this size (yet): read it from the tree
        edge = await tree.stored_frontier(uow.db, size, uow.session)
    grown, frontier = size, None
    made: dict[merkle.NodeId, bytes] = {}
    if edge is not None:  # else the tree stops growing (logged): the append goes on
        grown, made = await tree.catch_up(uow.db, uow.session, head, size,
                                          tree.CATCH_UP_MAX, entries, edge)
        frontier = tree.grown_frontier(size, edge, grown, made)
    # The head first: a competing replica's transaction conflicts here, before
    # the (larger) entry insert is done in vain.
    if not await store.move_head(uow.db, uow.session, head, entries[-1], appended_at,
                                 tree_size=grown, frontier=frontier):
        raise ChainMoved(f"the chain head moved past {head.seq}")
    await store.insert_entries(uow.db, uow.session, entries)
    await store.insert_subtrees(uow.db, made, uow.session,
                                tolerate_existing=size < head.seq + 1)
    return entries


def _invalid(location: str, message: str) -> UnprocessableContent:
    return UnprocessableContent(f"{location}: {message}",
                                errors=[{"location": location, "message": message}])


async def search(runtime: ServiceRuntime, where: store.EntryFilter, cursor: str | None,
                 limit: int) -> tuple[list[Document], str | None]:
    """One page of entries matching ``where``, newest (highest ``seq``) first, and the
    next cursor (``None`` on the last page).

    Raises:
        UnprocessableContent: ``since`` after ``until`` (422).
        BadRequest: a cursor this API did not issue (400).
    """
    if where.since is not None and where.until is not None and where.since > where.until:
        raise _invalid("query.from", "must not be after 'to'")
    before = cursor_seq(cursor)
    docs = await store.find_entries(runtime.db, where, before_seq=before, limit=limit + 1)
    next_cursor = encode_cursor({"seq": docs[limit - 1]["seq"]}) if len(docs) > limit else None
    return docs[:limit], next_cursor


def cursor_seq(cursor: str | None) -> int | None:
    """The ``seq`` a cursor this API issued holds (``None`` without a cursor).

    Raises:
        BadRequest: (400) a cursor this API did not issue.
    """
    position = decode_cursor(cursor)
    if position is None:
        return None
    seq = position.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= domain.MAX_SEQ:
        raise BadRequest("the cursor is malformed; pass back the next link unchanged")
    return seq


def next_cursor(seq: int | None) -> str | None:
    """The cursor that continues after ``seq`` (``None`` when there is nothing after)."""
    return encode_cursor({"seq": seq}) if seq is not None else None


async def head(runtime: ServiceRuntime) -> domain.ChainHead:
    """The last entry's ``seq`` and ``hash`` (the genesis head while the log is empty)."""
    return await store.read_head(runtime.db)


async def get_entry(runtime: ServiceRuntime, seq: int) -> Document:
    """Entry ``seq``. Raises NotFound (404) when no entry has it."""
    doc = await store.get_entry(runtime.db, seq)
    if doc is None:
        raise NotFound(f"no audit entry has seq {seq}")
    return doc


async def verify(runtime: ServiceRuntime, from_seq: int = 0, to_seq: int | None = None
                 ) -> tuple[domain.Verification, domain.ChainHead, int]:
    """Recompute the chain over ``from_seq..to_seq`` (inclusive) against the stored entries.

    ``to_seq`` defaults to, and is capped at, the head's ``seq``. A run that
    starts after 0 links to the stored ``hash`` of entry ``from_seq - 1``
    (trusted, not recomputed: verify from 0 to check everything). Returns the
    verification (rules: :class:`~healthflow.audit.domain.ChainVerifier`), the
    head, and the ``to_seq`` actually checked.

    Raises:
        UnprocessableContent: ``from_seq`` after ``to_seq`` (422).
    """
    if to_seq is not None and from_seq > to_seq:
        raise _invalid("query.from_seq", "must not be after to_seq")
    db = runtime.db
    chain_head = await store.read_head(db)
    last = chain_head.seq if to_seq is None else min(to_seq, chain_head.seq)
    prev_hash = domain.GENESIS_HASH
    if 0 < from_seq <= last:
        stored = await store.stored_hash(db, from_seq - 1)
        if stored is None:
            broken = domain.Verification(ok=False, checked=0, first_broken_index=from_seq - 1,
                                         reason=f"entry {from_seq - 1} is missing")
            return broken, chain_head, last
        prev_hash = stored
    verifier = domain.ChainVerifier(from_seq, prev_hash)
    if from_seq <= last:
        async for entry in store.entries_between(db, from_seq, last):
            if not verifier.feed(entry):
                break
    return verifier.finish(last, chain_head), chain_head, last


async def export_size(runtime: ServiceRuntime, tree_size: int | None) -> int:
    """How many entries an export holds: ``tree_size`` (default: the whole log now).

    Raises:
        UnprocessableContent: (422) ``tree_size`` beyond the log.
    """
    size = (await store.read_head(runtime.db)).seq + 1
    if tree_size is None:
        return size
    if tree_size > size:
        raise _invalid("query.tree_size", f"the log holds {size} entries, not {tree_size}")
    return tree_size


async def export(runtime: ServiceRuntime, size: int) -> AsyncIterator[Document]:
    """Entries ``0..size-1`` in ``seq`` order, streamed (memory: one batch)."""
    if size > 0:
        async for entry in store.entries_between(runtime.db, 0, size - 1):
            yield entry
