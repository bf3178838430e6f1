"""Use cases of the Merkle tree over the chain: grow it with each append, catch it up
with entries it lacks, and serve roots and RFC 9162 proofs.

The arithmetic is :mod:`healthflow.audit.merkle`; the stored subtrees are
:data:`healthflow.audit.store.TREE`. A proof or root needs ``O(log n)`` stored
hashes, read in one query (two when it needs a leaf: leaves are read from their
entries); the log is never rehashed to answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.audit import domain, merkle, store
from healthflow.common.errors import UnprocessableContent
from healthflow.common.mongo import Document
from healthflow.common.service import ServiceRuntime

log = logging.getLogger(__name__)

REBUILD_BATCH = 1000
"""Entries hashed into the tree per write while catching up outside an append."""

CATCH_UP_MAX = 256
"""At most this many missing leaves are hashed inside one append's transaction."""


class TreeBehind(RuntimeError):
    """The stored tree lacks a subtree a proof or root of that size needs."""


async def stored_frontier(db: AsyncDatabase[Document], size: int,
                          session: AsyncClientSession | None = None) -> list[bytes] | None:
    """The hashes of :func:`merkle.frontier` (``size``) as stored in the tree (one query);
    ``None`` (logged as an error) when one is missing."""
    nodes = merkle.frontier(size)
    stored = await store.read_subtrees(db, nodes, session)
    if len(stored) != len(nodes):
        log.error("audit Merkle tree incomplete: its frontier is not stored; the tree stops "
                  "growing", extra={"tree_size": size})
        return None
    return [stored[node] for node in nodes]


async def _missing_leaves(db: AsyncDatabase[Document], session: AsyncClientSession | None,
                          size: int, last: int) -> list[bytes] | None:
    """Leaf hashes of entries ``size..last``; ``None`` when a seq is missing (a gap)."""
    docs = [doc async for doc in store.entries_between(db, size, last, session=session)]
    if [doc["seq"] for doc in docs] != list(range(size, last + 1)):
        log.error("audit log has a gap in seq: the Merkle tree stops growing",
                  extra={"tree_size": size, "log_size": last + 1})
        return None
    return [merkle.entry_leaf_hash(doc["hash"]) for doc in docs]


async def catch_up(db: AsyncDatabase[Document], session: AsyncClientSession | None,
                   head: domain.ChainHead, size: int, limit: int,
                   entries: Sequence[domain.Entry] = (), edge: Sequence[bytes] | None = None
                   ) -> tuple[int, dict[merkle.NodeId, bytes]]:
    """The tree of ``size`` leaves grown by up to ``limit`` entries it lacks (up to the
    ``head``) and, once it reaches the head, by ``entries`` (appended after ``head``).

    ``edge``: the frontier hashes of the tree of ``size`` when the caller has
    them (the head's copy), else they are read. Returns the new size and the
    subtrees to store. The tree stays at ``size`` (logged as an error, nothing
    raised: events keep being appended) when a seq is missing below the head or
    the stored frontier is incomplete. Round trips: the missing entries (only
    when behind) and the frontier read (only without ``edge``).
    """
    leaves: list[bytes] = []
    last = min(head.seq, size + limit - 1)
    if size <= last:
        missing = await _missing_leaves(db, session, size, last)
        if missing is None:
            return size, {}
        leaves = missing
    if size + len(leaves) == head.seq + 1:
        leaves += [merkle.entry_leaf_hash(e.hash) for e in entries]
    if not leaves:
        return size, {}
    if edge is None:
        edge = await stored_frontier(db, size, session)
        if edge is None:
            return size, {}
    return size + len(leaves), merkle.grow(size, edge, leaves)


def grown_frontier(size: int, edge: Sequence[bytes], grown: int,
                   made: Mapping[merkle.NodeId, bytes]) -> list[bytes] | None:
    """The frontier hashes of the tree of ``grown`` leaves, from those of ``size``
    (``edge``) and the subtrees ``made`` growing it; ``None`` if one is unknown."""
    known = dict(zip(merkle.frontier(size), edge, strict=True)) | dict(made)
    nodes = merkle.frontier(grown)
    return [known[node] for node in nodes] if all(n in known for n in nodes) else None


async def rebuild(db: AsyncDatabase[Document]) -> int:
    """Hash the entries the stored tree lacks into it, in batches outside a transaction.

    Runs at start-up and in the checkpoint loop (:func:`healthflow.audit.checkpoints.run_due`):
    entries appended by a replica that keeps no tree, a log kept before the tree.
    Safe beside appends and other replicas (subtrees already stored are kept; the
    size only grows). Stops, without raising, at a gap. Returns the leaves added.
    """
    added = 0
    while True:
        head, size = await store.read_chain(db)
        grown, made = await catch_up(db, None, head, size, REBUILD_BATCH)
        if grown == size:
            break
        await store.insert_subtrees(db, made, tolerate_existing=True)
        await store.advance_tree_size(db, grown)
        added += grown - size
    if added:
        log.info("Merkle tree caught up", extra={"leaves_added": added, "tree_size": size})
    return added


def _invalid(location: str, message: str) -> UnprocessableContent:
    return UnprocessableContent(f"{location}: {message}",
                                errors=[{"location": location, "message": message}])


async def _log_size(runtime: ServiceRuntime) -> int:
    """The entries proofs cover: those hashed into the tree (may trail the head)."""
    return await store.tree_size(runtime.db)


async def _hashes(db: AsyncDatabase[Document], ranges: Sequence[merkle.Range]) -> list[bytes]:
    stored = await store.read_subtrees(db, merkle.needed(ranges))
    try:
        return [merkle.range_hash(start, end, stored) for start, end in ranges]
    except KeyError as exc:
        raise TreeBehind(f"subtree {exc.args[0]} is not stored") from None


async def root(db: AsyncDatabase[Document], size: int) -> bytes:
    """``MTH(D[size])``: the root hash of the first ``size`` entries (32 bytes)."""
    return (await _hashes(db, [(0, size)]))[0] if size else merkle.EMPTY_ROOT


async def inclusion_proof(runtime: ServiceRuntime, seq: int, tree_size: int) -> list[bytes]:
    """``PATH(seq, D[tree_size])`` (RFC 9162 §2.1.3.1): 32-byte hashes, deepest first.

    Raises:
        UnprocessableContent: (422) ``tree_size`` beyond the log, or ``seq`` not below it.
    """
    size = await _log_size(runtime)
    if tree_size > size:
        raise _invalid("query.tree_size", f"the log holds {size} entries, not {tree_size}")
    if seq >= tree_size:
        raise _invalid("query.seq", f"entry {seq} is not in a tree of {tree_size} entries")
    return await _hashes(runtime.db, merkle.inclusion_ranges(seq, tree_size))


async def consistency_proof(runtime: ServiceRuntime, first: int, second: int
                            ) -> list[bytes]:
    """``PROOF(first, D[second])`` (RFC 9162 §2.1.4.1): 32-byte hashes (empty when
    ``first == second``).

    Raises:
        UnprocessableContent: (422) ``second`` beyond the log, or ``first`` after ``second``.
    """
    size = await _log_size(runtime)
    if second > size:
        raise _invalid("query.second", f"the log holds {size} entries, not {second}")
    if first > second:
        raise _invalid("query.first", "must not be greater than second")
    return await _hashes(runtime.db, merkle.consistency_ranges(first, second))
