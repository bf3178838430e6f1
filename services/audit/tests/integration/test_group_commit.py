"""Group commits: several deliveries appended in one transaction keep the chain, the
Merkle tree and the head's copy of the tree's frontier right."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from healthflow.audit import domain, merkle, store, tree
from healthflow.auditverify import proofs
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import INBOX
from healthflow.common.mongo import utcnow

if TYPE_CHECKING:
    from ..conftest import Audit


async def _logged(audit: Audit) -> list[dict[str, Any]]:
    return [store.entry_view(d) async for d in audit.db[store.ENTRIES].find().sort("_id", 1)]


async def _check_tree(audit: Audit, size: int) -> None:
    """Chain intact; every root up to ``size`` and the head's frontier match the entries."""
    logged = await _logged(audit)
    head = await store.read_head(audit.db)
    assert len(logged) == size and domain.verify_chain(logged, head=head).ok
    leaves = [proofs.leaf_hash(bytes.fromhex(e["hash"])) for e in logged]
    assert await store.tree_size(audit.db) == size
    for n in range(1, size + 1):
        assert await tree.root(audit.db, n) == proofs.root_of(leaves[:n]), n
    _, tree_size, edge = await store.read_append_state(audit.db)
    assert tree_size == size
    assert edge == await tree.stored_frontier(audit.db, size)
    assert edge is not None and len(edge) == len(merkle.frontier(size))
    # Leaves are not stored: their hashes come from the entries' chain hashes.
    assert await audit.db[store.TREE].count_documents({"level": 0}) == 0
    assert await audit.db[store.TREE].count_documents({}) == size - size.bit_count()


async def test_a_group_with_a_redelivery_appends_only_the_new_events(
        audit: Audit, make_event: Callable[..., CloudEvent]) -> None:
    events = [make_event(n=i) for i in range(5)]
    await audit.deliver(*events[:3])
    # One group: a redelivery of an appended event, two new ones, the redelivery again.
    await audit.deliver(events[1], events[3], events[4], events[1])
    logged = await _logged(audit)
    assert [e["event_id"] for e in logged] == [e.id for e in events]
    await audit.deliver(*reversed(events))  # a later group of redeliveries only
    assert [e["event_id"] for e in await _logged(audit)] == [e.id for e in events]
    # The dedupe rests on the entries' unique event_id alone: no inbox record is written.
    assert await audit.db[INBOX].count_documents({}) == 0
    await _check_tree(audit, 5)


async def test_a_group_across_powers_of_two_grows_the_tree_and_its_frontier(
        audit: Audit, make_event: Callable[..., CloudEvent]) -> None:
    await audit.deliver(*(make_event(n=i) for i in range(3)))
    await _check_tree(audit, 3)
    await audit.deliver(*(make_event(n=i) for i in range(3, 9)))  # 3 -> 9: past 4 and 8
    await _check_tree(audit, 9)
    logged = await _logged(audit)
    leaves = [proofs.leaf_hash(bytes.fromhex(e["hash"])) for e in logged]
    root = proofs.root_of(leaves)
    for seq in (0, 3, 7, 8):
        path = await tree.inclusion_proof(audit.runtime, seq, 9)
        proofs.verify_inclusion(seq, 9, leaves[seq], path, root)  # raises if wrong
    await audit.deliver(make_event(n=9))  # one more: from the head's frontier alone
    await _check_tree(audit, 10)


async def test_a_frontier_left_behind_by_a_catch_up_is_not_trusted(
        audit: Audit, make_event: Callable[..., CloudEvent]) -> None:
    await audit.deliver(make_event(n=0), make_event(n=1))
    # A replica that keeps no tree appends; the catch-up outside a transaction then
    # moves tree_size alone, so the head's frontier is of another size.
    head = await store.read_head(audit.db)
    entries = domain.chain(head, [make_event(n=i) for i in range(2, 5)], utcnow())
    await audit.db[store.ENTRIES].insert_many([store.to_document(e) for e in entries])
    await audit.db[store.CHAIN].update_one(
        {"_id": store.HEAD_ID}, {"$set": {"seq": entries[-1].seq, "hash": entries[-1].hash}})
    assert await tree.rebuild(audit.db) == 3
    _, size, edge = await store.read_append_state(audit.db)
    assert (size, edge) == (5, None)
    await audit.deliver(make_event(n=5), make_event(n=6))
    await _check_tree(audit, 7)
