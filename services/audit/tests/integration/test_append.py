"""Appending through the consumer: once per event, one chain, verifiable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from healthflow.audit import domain, handlers, store
from healthflow.common.events.consumer import Consumer
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import INBOX

from ..conftest import Audit


async def entries(audit: Audit) -> list[dict[str, Any]]:
    return [store.entry_view(d) async for d in audit.db[store.ENTRIES].find().sort("_id", 1)]


async def test_published_events_are_chained_in_order(
    audit: Audit, make_event: Callable[..., CloudEvent],
    eventually: Callable[..., Awaitable[None]],
) -> None:
    events = [make_event("appointment.booked", n=i) for i in range(3)]
    for event in events:
        await audit.runtime.transport.publish(event)  # the in-process transport

    async def all_logged() -> bool:
        return await audit.db[store.ENTRIES].count_documents({}) == 3

    await eventually(all_logged, what="three entries")
    logged = await entries(audit)
    assert [e["seq"] for e in logged] == [0, 1, 2]
    assert [e["event_id"] for e in logged] == [e.id for e in events]
    assert logged[0]["prev_hash"] == domain.GENESIS_HASH
    assert logged[2]["envelope"] == events[2].model_dump(mode="json", exclude_none=True)
    assert domain.verify_chain(logged).ok
    head = await store.read_head(audit.db)
    assert (head.seq, head.hash) == (2, logged[2]["hash"])
    await audit.deliver(*events)  # redelivered: no-ops, the entries' event_id refuses them
    assert [e["event_id"] for e in await entries(audit)] == [e.id for e in events]
    assert await audit.db[INBOX].count_documents({}) == 0  # the log is its own inbox
    ready = await audit.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["consumers"] == "attached"


async def test_a_duplicated_delivery_makes_one_entry(
    audit: Audit, make_event: Callable[..., CloudEvent]
) -> None:
    event = make_event("patient.updated")
    await audit.deliver(event, event, event)  # concurrently: possibly one group
    await audit.deliver(event)  # later: a redelivery
    await audit.runtime.transport.publish(event)  # through the transport too
    await audit.deliver(event)
    plain = Consumer(audit.runtime, handlers.HANDLERS)  # the one-event-per-transaction path
    await plain(event)
    assert await audit.db[store.ENTRIES].count_documents({"event_id": event.id}) == 1
    assert await audit.db[store.ENTRIES].count_documents({}) == 1
    assert (await store.read_head(audit.db)).seq == 0


async def test_the_plain_handler_path_chains_too(
    audit: Audit, make_event: Callable[..., CloudEvent]
) -> None:
    plain = Consumer(audit.runtime, handlers.HANDLERS)
    await audit.deliver(make_event(), make_event())
    for _ in range(2):
        await plain(make_event())
    logged = await entries(audit)
    assert [e["seq"] for e in logged] == [0, 1, 2, 3]
    assert domain.verify_chain(logged, head=await store.read_head(audit.db)).ok


async def test_an_unhashable_event_fails_alone(
    audit: Audit, make_event: Callable[..., CloudEvent]
) -> None:
    good, bad = make_event(n=1), make_event(n=2**60)
    consumer = audit.runtime.consumer
    assert consumer is not None
    results = await asyncio.gather(consumer(good), consumer(bad), return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], domain.UnhashableEvent)
    assert [e["event_id"] for e in await entries(audit)] == [good.id]
