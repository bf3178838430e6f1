"""The outbox relay: leases, retries with back-off, writes per record, purge, lag — against
the real server."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pymongo import AsyncMongoClient, monitoring

from healthflow.common import mongo
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.inprocess import InProcessTransport
from healthflow.common.events.outbox import (
    OUTBOX,
    OUTBOX_SENT,
    UNLEASED,
    outbox_document,
    outbox_indexes,
)
from healthflow.common.events.relay import OutboxRelay
from healthflow.common.events.transport import PublishError, Subscription
from healthflow.devkit.testing import eventually


class FlakyTransport(InProcessTransport):
    """The real in-process transport, made to refuse the first ``failures`` publishes."""

    def __init__(self, store, failures: int) -> None:
        super().__init__(store)
        self.failures = failures

    async def publish(self, event: CloudEvent) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise PublishError("broker said no (injected)")
        await super().publish(event)


@pytest.fixture
async def db(mongodb_url, unique_name):
    return mongo.get_database(mongodb_url, f"relay_{unique_name}")


async def make_transport(db, received: list[str], failures: int = 0) -> InProcessTransport:
    transport = FlakyTransport(db, failures)
    await transport.connect()

    async def handler(event: CloudEvent) -> None:
        received.append(event.id)

    await transport.subscribe(Subscription("sink", ["#"], handler, retry_delays=()))
    return transport


def event(n: int) -> CloudEvent:
    return CloudEvent(source="/healthflow/test", type="test.happened", subject=str(n))


async def test_relay_publishes_and_marks_sent(db):
    received: list[str] = []
    transport = await make_transport(db, received)
    events = [event(i) for i in range(30)]
    await db[OUTBOX].insert_many([outbox_document(e) for e in events])
    relay = OutboxRelay(db, transport, service="t", batch_size=10)
    total = 0
    while (n := await relay.relay_once()) > 0:
        total += n
    assert total == 30
    assert sorted(received) == sorted(e.id for e in events)
    assert await db[OUTBOX].count_documents({"status": "pending"}) == 0
    sent = await db[OUTBOX].find({"status": "sent"}).to_list()
    assert len(sent) == 30
    assert all(r["sent_at"] and r["lease_owner"] is None and r["lease_until"] == UNLEASED
               for r in sent)
    assert await relay.lag() == (0, 0.0)
    await transport.close()


async def test_failed_publish_is_retried_with_backoff(db):
    received: list[str] = []
    transport = await make_transport(db, received, failures=1)
    e = event(1)
    await db[OUTBOX].insert_one(outbox_document(e))
    relay = OutboxRelay(db, transport, service="t", max_backoff=0.3)
    assert await relay.relay_once() == 0
    record = await db[OUTBOX].find_one({"_id": e.id})
    assert record["status"] == "pending" and record["attempts"] == 1
    assert record["next_attempt_at"] > mongo.utcnow() - timedelta(milliseconds=5)
    assert "injected" in record["last_error"]
    assert record["lease_owner"] is None and record["lease_until"] == UNLEASED
    for _ in range(50):
        if await relay.relay_once():
            break
        await asyncio.sleep(0.05)
    assert received == [e.id]
    await transport.close()


async def test_live_lease_is_respected_and_expired_lease_is_reclaimed(db):
    received: list[str] = []
    transport = await make_transport(db, received)
    held, abandoned = event(1), event(2)
    now = mongo.utcnow()
    docs = [outbox_document(held), outbox_document(abandoned)]
    docs[0] |= {"lease_owner": "other-replica", "lease_until": now + timedelta(seconds=60)}
    docs[1] |= {"lease_owner": "crashed-replica", "lease_until": now - timedelta(seconds=1)}
    await db[OUTBOX].insert_many(docs)
    relay = OutboxRelay(db, transport, service="t")
    assert await relay.relay_once() == 1
    assert received == [abandoned.id]
    assert (await db[OUTBOX].find_one({"_id": held.id}))["status"] == "pending"
    await transport.close()


async def test_two_relays_never_publish_a_record_twice_at_once(db):
    received: list[str] = []
    transport = await make_transport(db, received)
    events = [event(i) for i in range(60)]
    await db[OUTBOX].insert_many([outbox_document(e) for e in events])
    relays = [OutboxRelay(db, transport, service="t", batch_size=7) for _ in range(2)]

    async def drain(relay: OutboxRelay) -> None:
        while await relay.relay_once():
            pass

    await asyncio.gather(*(drain(r) for r in relays))
    await drain(relays[0])
    assert sorted(received) == sorted(e.id for e in events)  # each exactly once
    await transport.close()


async def test_purge_deletes_only_sent_records_past_retention(db):
    transport = await make_transport(db, [])
    old_sent, new_sent, pending, archived, new_archived = (event(i) for i in range(1, 6))
    now = mongo.utcnow()
    docs = [outbox_document(e) for e in (old_sent, new_sent, pending, archived, new_archived)]
    for i in (0, 3):
        docs[i] |= {"status": "sent", "sent_at": now - timedelta(days=8)}
    for i in (1, 4):
        docs[i] |= {"status": "sent", "sent_at": now - timedelta(hours=1)}
    docs[2] |= {"created_at": now - timedelta(days=9)}
    await db[OUTBOX].insert_many(docs[:3])
    await db[OUTBOX_SENT].insert_many(docs[3:])  # the archive of earlier versions
    relay = OutboxRelay(db, transport, service="t", retention=7 * 24 * 3600)
    assert await relay.purge() == 2
    assert {d["_id"] async for d in db[OUTBOX_SENT].find({}, {"_id": 1})} == {new_archived.id}
    assert {d["_id"] async for d in db[OUTBOX].find({}, {"_id": 1})} == {new_sent.id, pending.id}
    pending_count, age = await relay.lag()
    assert pending_count == 1 and age > 8 * 24 * 3600
    await transport.close()


async def test_notified_ids_are_claimed_without_a_scan_and_a_crash_is_recovered(db):
    received: list[str] = []
    transport = await make_transport(db, received)
    first, second = event(1), event(2)
    await db[OUTBOX].insert_many([outbox_document(first), outbox_document(second)])
    relay = OutboxRelay(db, transport, service="t")
    assert [r["_id"] for r in await relay.claim_ids([first.id])] == [first.id]
    # Simulate the process dying here: the lease is held, nothing was published.
    assert await relay.claim_ids([first.id]) == []
    await db[OUTBOX].update_one({"_id": first.id}, {"$set": {"lease_until": UNLEASED}})
    assert await relay.relay_once() == 2
    assert sorted(received) == sorted([first.id, second.id])
    await transport.close()


async def test_running_relay_wakes_on_insert_without_waiting_for_the_poll(db):
    received: list[str] = []
    transport = await make_transport(db, received)
    relay = OutboxRelay(db, transport, service="t", poll_interval=30.0)
    await relay.start()
    try:
        await asyncio.sleep(0.3)  # let the change stream open
        e = event(7)
        await db[OUTBOX].insert_one(outbox_document(e))
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.05)
        assert received == [e.id], "the change stream should have woken the relay"
    finally:
        await relay.stop()
        await transport.close()


class WriteCounter(monitoring.CommandListener):
    """Documents written to the outbox collections, counted from the server's replies."""

    def __init__(self) -> None:
        self.pending: dict[int, str] = {}
        self.written = 0
        self.commands: list[str] = []
        self.filters: list[set[str]] = []  # the fields each update filters on

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        if event.command_name in ("insert", "update", "delete") and target in (OUTBOX,
                                                                               OUTBOX_SENT):
            self.pending[event.request_id] = f"{event.command_name} {target}"
            for statement in event.command.get("updates", []):  # (the purge deletes by date)
                self.filters.append(set(statement["q"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        command = self.pending.pop(event.request_id, None)
        if command is not None:
            self.written += int(event.reply.get("nModified", event.reply.get("n", 0)))
            self.commands.append(command)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.pending.pop(event.request_id, None)


@pytest.fixture
async def counted(mongodb_url, db):
    """(the test's database through a client whose writes are counted, the counter)."""
    counter = WriteCounter()
    client: AsyncMongoClient = AsyncMongoClient(mongodb_url, event_listeners=[counter],
                                                tz_aware=True)
    yield client.get_database(db.name, codec_options=mongo.CODEC_OPTIONS), counter
    await client.close()


async def test_a_record_committed_here_costs_one_write_and_a_batch_one_update(db, counted):
    received: list[str] = []
    transport = await make_transport(db, received)
    counted_db, counter = counted
    relay = OutboxRelay(counted_db, transport, service="t", batch_size=10, poll_interval=30.0)
    await relay.start()
    try:
        owner, until = relay.commit_lease() or ("", UNLEASED)
        records = [outbox_document(event(i), lease_owner=owner, lease_until=until)
                   for i in range(30)]
        await db[OUTBOX].insert_many(records)  # the commit: not counted
        relay.submit(records)

        async def none_pending() -> bool:
            return await db[OUTBOX].count_documents({"status": "pending"}) == 0

        await eventually(none_pending)
    finally:
        await relay.stop()
    assert sorted(received) == sorted(r["_id"] for r in records)
    assert counter.written == 30, counter.commands  # one per record (archive + delete: 60)
    assert counter.commands.count(f"update {OUTBOX}") == 3  # one per batch of 10
    # SecantusDB uses the _id index for a write filtered on _id alone, and scans the
    # whole collection (sent records kept for the retention too) for anything more.
    assert counter.filters == [{"_id"}] * 3
    await transport.close()


async def test_a_claimed_record_costs_its_lease_and_one_write(db, counted):
    transport = await make_transport(db, [])
    counted_db, counter = counted
    await db[OUTBOX].insert_many([outbox_document(event(i)) for i in range(30)])
    relay = OutboxRelay(counted_db, transport, service="t", batch_size=10)
    while await relay.relay_once():
        pass
    assert counter.written == 60, counter.commands  # the claim and the mark (and not a move)
    assert counter.commands == [f"update {OUTBOX}"] * 6
    assert counter.filters == [{"_id"}] * 6
    assert await db[OUTBOX].count_documents({"status": "sent"}) == 30
    await transport.close()


async def test_sent_records_expire_by_a_ttl_index_retuned_when_the_retention_changes(db):
    await mongo.ensure_indexes(db, outbox_indexes(retention=3600))
    await mongo.ensure_indexes(db, outbox_indexes(retention=3600))  # a second replica
    await mongo.ensure_indexes(db, outbox_indexes(retention=60))  # the setting changed
    indexes = {i["name"]: i async for i in await db[OUTBOX].list_indexes()}
    assert indexes["sent_ttl"]["expireAfterSeconds"] == 60
    assert indexes["sent_ttl"]["sparse"] is True
    assert indexes["pending_due"]["partialFilterExpression"] == {"status": "pending"}
    # The polling pass reads the partial index, not the sent records kept for the retention.
    transport = await make_transport(db, [])
    sent = [outbox_document(event(i)) | {"status": "sent", "sent_at": mongo.utcnow()}
            for i in range(50)]
    due = event(99)
    await db[OUTBOX].insert_many([*sent, outbox_document(due)])
    relay = OutboxRelay(db, transport, service="t")
    assert [r["_id"] for r in await relay.claim()] == [due.id]
    await transport.close()

