"""The Merkle tree trails the chain and catches up without failing an append: entries
written by a replica that keeps no tree (a rolling update), a log with a gap in seq."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from healthflow.audit import checkpoints, domain, store, tree
from healthflow.auditverify import proofs
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.mongo import utcnow

if TYPE_CHECKING:
    from ..conftest import Audit


async def _append_without_tree(audit: Audit, events: list[CloudEvent]) -> None:
    """What a replica of the version before the tree does: entries and head, no subtrees."""
    head = await store.read_head(audit.db)
    entries = domain.chain(head, events, utcnow())
    await audit.db[store.ENTRIES].insert_many([store.to_document(e) for e in entries])
    await audit.db[store.CHAIN].update_one(
        {"_id": store.HEAD_ID}, {"$set": {"seq": entries[-1].seq, "hash": entries[-1].hash}})


async def _leaves(audit: Audit, count: int) -> list[bytes]:
    docs: list[dict[str, Any]] = [d async for d in store.entries_between(audit.db, 0, count - 1)]
    return [proofs.leaf_hash(bytes.fromhex(d["hash"])) for d in docs]


async def test_appends_catch_the_tree_up_after_an_old_replica_appended(
        audit: Audit, make_event: Callable[..., CloudEvent]) -> None:
    await audit.deliver(make_event(n=0))
    await _append_without_tree(audit, [make_event(n=i) for i in range(1, 6)])
    assert await store.tree_size(audit.db) == 1
    await audit.deliver(make_event(n=6))  # raised TreeBehind (then dead-lettered) before
    assert await store.tree_size(audit.db) == 7
    assert await tree.root(audit.db, 7) == proofs.root_of(await _leaves(audit, 7))


async def test_a_long_lag_is_caught_up_in_bounded_steps_and_by_the_loop(
        audit: Audit, make_event: Callable[..., CloudEvent]) -> None:
    behind = tree.CATCH_UP_MAX + 10
    await _append_without_tree(audit, [make_event(n=i) for i in range(behind)])
    await audit.deliver(make_event(n=-1))
    assert await store.tree_size(audit.db) == tree.CATCH_UP_MAX  # the append still landed
    assert (await store.read_head(audit.db)).seq == behind
    await checkpoints.run_due(audit.runtime)
    assert await store.tree_size(audit.db) == behind + 1
    latest = await store.latest_checkpoint(audit.db)
    assert latest is not None and latest["_id"] == behind + 1
    assert await tree.root(audit.db, behind + 1) == proofs.root_of(
        await _leaves(audit, behind + 1))


async def test_a_gap_in_seq_stops_the_tree_but_not_the_log(
        audit: Audit, make_event: Callable[..., CloudEvent]) -> None:
    await audit.deliver(make_event(n=0))
    await _append_without_tree(audit, [make_event(n=i) for i in range(1, 4)])
    await audit.db[store.ENTRIES].delete_one({"_id": 2})
    assert await tree.rebuild(audit.db) == 0  # no crash loop at start
    await audit.deliver(make_event(n=4))
    assert (await store.read_head(audit.db)).seq == 4
    assert await store.tree_size(audit.db) == 1
