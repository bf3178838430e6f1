"""Two audit replicas on one database never fork the chain."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from healthflow.audit import domain, service, store, tree
from healthflow.audit.app import create_app
from healthflow.audit.handlers import GroupCommitConsumer
from healthflow.audit.settings import Settings
from healthflow.auditverify import proofs
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.inprocess import InProcessTransport
from healthflow.common.mongo import get_database
from healthflow.common.service import ServiceRuntime
from healthflow.devkit.testing import running_app

EVENTS = 240


@pytest.fixture
async def replicas(settings: Settings, mongodb_url: str,
                   unique_name: str) -> AsyncIterator[tuple[ServiceRuntime, ServiceRuntime]]:
    """Two runtimes on one database, each with its own MongoDB client and transport."""
    apps = []
    for name in ("a", "b"):
        # A distinct URL gives each replica its own client (connection pool, sessions).
        url = f"{mongodb_url}&appname=audit-{name}-{unique_name}"
        platform = get_database(url, f"platform_{unique_name}")
        own = settings.model_copy(update={"mongodb_url": url, "append_batch_max": 16})
        apps.append(create_app(own, transport=InProcessTransport(platform)))
    async with running_app(apps[0]), running_app(apps[1]):
        yield apps[0].state.runtime, apps[1].state.runtime


async def test_concurrent_replicas_build_one_gap_free_chain(
    replicas: tuple[ServiceRuntime, ServiceRuntime], make_event: Callable[..., CloudEvent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = replicas
    assert a.db.name == b.db.name and a.client is not b.client
    assert isinstance(a.consumer, GroupCommitConsumer)
    assert isinstance(b.consumer, GroupCommitConsumer)
    # Observe (not replace) the appends: attempts per transaction, entries per replica.
    attempts = 0
    appended = {"a": 0, "b": 0}
    groups = 0
    real_append = service.append

    async def counted_append(*args: Any, **kwargs: Any) -> list[domain.Entry]:
        nonlocal attempts
        attempts += 1
        return await real_append(*args, **kwargs)

    monkeypatch.setattr(service, "append", counted_append)
    for name, consumer in (("a", a.consumer), ("b", b.consumer)):
        real_commit = consumer._commit

        async def counted_commit(events: Sequence[CloudEvent], name: str = name,
                                 real: Any = real_commit) -> list[domain.Entry]:
            nonlocal groups
            entries = await real(events)
            appended[name] += len(entries)
            groups += 1
            return entries

        monkeypatch.setattr(consumer, "_commit", counted_commit)
    events = [make_event("appointment.booked", n=i) for i in range(EVENTS)]
    rng = random.Random(7)
    deliveries = []
    for event in events:
        # Competing consumers split the queue; a tenth is redelivered to the other one too.
        first, other = (a, b) if rng.random() < 0.5 else (b, a)
        deliveries.append(first.consumer(event))  # type: ignore[misc]
        if rng.random() < 0.1:
            deliveries.append(other.consumer(event))  # type: ignore[misc]
    rng.shuffle(deliveries)
    async with asyncio.timeout(60):
        await asyncio.gather(*deliveries)

    logged = [store.entry_view(d) async for d in a.db[store.ENTRIES].find().sort("_id", 1)]
    assert [e["seq"] for e in logged] == list(range(EVENTS))
    assert sorted(e["event_id"] for e in logged) == sorted(e.id for e in events)
    head = await store.read_head(a.db)
    assert head == domain.ChainHead(seq=EVENTS - 1, hash=logged[-1]["hash"])
    assert domain.verify_chain(logged, head=head).ok
    result, _, _ = await service.verify(b)
    assert result == domain.Verification(ok=True, checked=EVENTS)
    # The Merkle tree both grew in their transactions matches the entries (offline
    # verifier's RFC 9162 root), and so does the frontier the head copies.
    leaves = [proofs.leaf_hash(bytes.fromhex(e["hash"])) for e in logged]
    assert await store.tree_size(a.db) == EVENTS
    assert await tree.root(b.db, EVENTS) == proofs.root_of(leaves)
    assert await tree.root(a.db, 100) == proofs.root_of(leaves[:100])
    _, _, edge = await store.read_append_state(a.db)
    assert edge is not None and edge == await tree.stored_frontier(a.db, EVENTS)
    # Both replicas appended, and they did contend for the head (conflicting
    # transactions were retried), or this test would prove nothing.
    assert appended["a"] > 0 and appended["b"] > 0
    assert appended["a"] + appended["b"] == EVENTS
    retried = attempts - groups
    print(f"appended a={appended['a']} b={appended['b']}; groups={groups} retried={retried}")
    assert retried > 0
