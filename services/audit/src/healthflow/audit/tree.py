"""Use cases of the Merkle tree over the chain: grow it with each append, rebuild it
for a log kept before it existed, and serve roots and RFC 9162 proofs.

The arithmetic is :mod:`healthflow.audit.merkle`; the stored subtrees are
:data:`healthflow.audit.store.TREE`. A proof or root needs ``O(log n)`` stored
hashes, read in one query; the log is never rehashed to answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.audit import domain, merkle, store
from healthflow.common.errors import UnprocessableContent
from healthflow.common.mongo import Document
from healthflow.common.service import ServiceRuntime

log = logging.getLogger(__name__)

REBUILD_BATCH = 1000
"""Entries hashed into the tree per write while rebuilding it."""


class TreeBehind(RuntimeError):
    """The stored tree lacks a subtree the chain's head implies (rebuild it: restart)."""


async def _edge(db: AsyncDatabase[Document], size: int,
                session: AsyncClientSession | None = None) -> list[bytes]:
    nodes = merkle.frontier(size)
    stored = await store.read_subtrees(db, nodes, session)
    if len(stored) != len(nodes):
        raise TreeBehind(f"the Merkle tree of size {size} is not stored whole")
    return [stored[node] for node in nodes]


async def grow(db: AsyncDatabase[Document], session: AsyncClientSession,
               head: domain.ChainHead, entries: Sequence[domain.Entry]) -> None:
    """Add ``entries`` (appended after ``head``) as leaves, in the append's transaction.

    Round trips: the frontier read and one insert.

    Raises:
        TreeBehind: the stored tree is not at the head's size.
    """
    size = head.seq + 1
    edge = await _edge(db, size, session)
    made = merkle.grow(size, edge, [merkle.entry_leaf_hash(e.hash) for e in entries])
    await store.insert_subtrees(db, made, session)


async def rebuild(db: AsyncDatabase[Document]) -> int:
    """Hash the entries the stored tree lacks (a log kept before the tree existed) into it.

    Runs at start-up, before the consumer. Safe when replicas start together
    (subtrees already stored are kept). Returns how many leaves were added.
    """
    head = await store.read_head(db)
    size = await store.tree_size(db)
    added = 0
    while size <= head.seq:
        last = min(head.seq, size + REBUILD_BATCH - 1)
        leaves = [merkle.entry_leaf_hash(doc["hash"])
                  async for doc in store.entries_between(db, size, last)]
        made = merkle.grow(size, await _edge(db, size), leaves)
        await store.insert_subtrees(db, made, tolerate_existing=True)
        size, added = size + len(leaves), added + len(leaves)
    if added:
        log.info("Merkle tree rebuilt", extra={"leaves_added": added, "tree_size": size})
    return added


def _invalid(location: str, message: str) -> UnprocessableContent:
    return UnprocessableContent(f"{location}: {message}",
                                errors=[{"location": location, "message": message}])


async def _log_size(runtime: ServiceRuntime) -> int:
    return (await store.read_head(runtime.db)).seq + 1


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
