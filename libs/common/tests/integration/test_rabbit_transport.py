"""RabbitTransport against a real RabbitMQ (a fresh vhost per session; see conftest.py).

Every test uses its own service names and event types, so tests sharing the
vhost never see each other's messages. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import aio_pika
import pytest

from healthflow.common.events import cli
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.rabbit import deadletters
from healthflow.common.events.rabbit.messages import CONTENT_TYPE
from healthflow.common.events.rabbit.topology import retry_queue_name
from healthflow.common.events.rabbit.transport import RabbitTransport
from healthflow.common.events.transport import (
    MAX_ERROR_CHARS,
    PublishError,
    Subscription,
    UnknownEventType,
    queue_name,
)

TIMEOUT = 10.0  # seconds: upper bound of every wait in this module
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def make_event(type_: str, **data: object) -> CloudEvent:
    return CloudEvent(
        source="tests",
        type=type_,
        subject="patient/p-1",
        data=dict(data),
        traceparent=TRACEPARENT,
        patientid="p-1",
    )


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    within: float = TIMEOUT,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` until true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(interval)


async def depths_are(transport: RabbitTransport, service: str, expected: dict[str, int]) -> None:
    async def check() -> bool:
        return await transport.queue_depths(service) == expected

    await eventually(check, what=f"depths of {service} == {expected}")


@pytest.fixture
async def transport(amqp_url: str) -> AsyncIterator[RabbitTransport]:
    t = RabbitTransport(amqp_url, publish_timeout=5.0, drain_timeout=5.0, reconnect_interval=0.5)
    await t.connect()
    try:
        yield t
    finally:
        await t.close()


@pytest.fixture
async def raw_channel(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A plain aio-pika channel for looking at the wire (not through the transport)."""
    connection = await aio_pika.connect(amqp_url, timeout=TIMEOUT)
    try:
        channel = await connection.channel()
        yield channel
    finally:
        await connection.close()


class Recorder:
    """A handler recording events; fails while ``failures`` > 0 (counting down)."""

    def __init__(self, failures: int = 0, *, always_fail: bool = False) -> None:
        self.events: list[CloudEvent] = []
        self.times: list[float] = []
        self.failures = failures
        self.always_fail = always_fail

    async def __call__(self, event: CloudEvent) -> None:
        self.events.append(event)
        self.times.append(time.monotonic())
        if self.always_fail:
            raise RuntimeError(f"cannot handle {event.type}")
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("transient failure")

    def ids(self) -> list[str]:
        return [e.id for e in self.events]


async def test_round_trip(transport: RabbitTransport) -> None:
    prefix = unique("t")
    service = unique("svc")
    recorder = Recorder()
    await transport.subscribe(Subscription(service, [f"{prefix}.#"], recorder))
    assert transport.connected and transport.consuming

    event = make_event(f"{prefix}.patient.registered", mrn="123")
    await transport.publish(event)

    await eventually(lambda: len(recorder.events) == 1, what="delivery")
    assert recorder.events[0] == event
    await depths_are(transport, service, {"queue": 0, "dlq": 0})


async def test_wire_format(
    transport: RabbitTransport, raw_channel: aio_pika.abc.AbstractChannel
) -> None:
    prefix = unique("t")
    exchange = await raw_channel.get_exchange(transport.exchange_name)
    queue = await raw_channel.declare_queue(exclusive=True)
    await queue.bind(exchange, f"{prefix}.#")

    event = make_event(f"{prefix}.lab.result_ready", value=1)
    await transport.publish(event)

    message = await queue.get(timeout=TIMEOUT)
    assert message.body == event.to_json_bytes()
    assert message.content_type == CONTENT_TYPE
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id == event.id
    assert message.type == event.type
    assert message.routing_key == event.type
    assert message.headers["traceparent"] == TRACEPARENT
    assert message.timestamp is not None
    assert abs(message.timestamp.timestamp() - event.time.timestamp()) < 1.0
    await message.ack()


async def test_unroutable_publish_raises(transport: RabbitTransport) -> None:
    with pytest.raises(PublishError, match="unroutable"):
        await transport.publish(make_event(f"{unique('t')}.nobody.listens"))
    # The publisher channel is still usable afterwards.
    with pytest.raises(PublishError, match="unroutable"):
        await transport.publish(make_event(f"{unique('t')}.nobody.listens"))


async def test_publish_before_connect_raises(amqp_url: str) -> None:
    with pytest.raises(PublishError):
        await RabbitTransport(amqp_url).publish(make_event("t.x.y"))


async def test_concurrent_publishes(transport: RabbitTransport) -> None:
    prefix = unique("t")
    service = unique("svc")
    recorder = Recorder()
    await transport.subscribe(Subscription(service, [f"{prefix}.*.*"], recorder, prefetch=8))
    events = [make_event(f"{prefix}.order.placed", n=n) for n in range(100)]
    # One unroutable publish among them must fail alone.
    bad = make_event(f"{unique('t')}.nobody.listens")
    results = await asyncio.gather(
        *(transport.publish(e) for e in [*events, bad]), return_exceptions=True
    )
    assert all(r is None for r in results[:-1])
    assert isinstance(results[-1], PublishError)
    await eventually(lambda: len(recorder.events) >= len(events), what="100 deliveries")
    assert sorted(recorder.ids()) == sorted(e.id for e in events)


async def test_retry_then_success(transport: RabbitTransport) -> None:
    prefix = unique("t")
    service = unique("svc")
    recorder = Recorder(failures=2)
    await transport.subscribe(
        Subscription(service, [f"{prefix}.#"], recorder, retry_delays=(0.2, 0.4))
    )
    event = make_event(f"{prefix}.appointment.booked")
    await transport.publish(event)

    await eventually(lambda: len(recorder.events) == 3, what="3 deliveries")
    assert recorder.ids() == [event.id] * 3
    # The delays come from the retry queues' TTLs (0.2 s, then 0.4 s).
    assert recorder.times[1] - recorder.times[0] >= 0.18
    assert recorder.times[2] - recorder.times[1] >= 0.38
    await depths_are(transport, service, {"queue": 0, "dlq": 0})
    for delay in (0.2, 0.4):
        channel_depth = await deadletters.message_count(
            transport._connection, retry_queue_name(service, delay)
        )
        assert channel_depth == 0
    await asyncio.sleep(0.3)
    assert len(recorder.events) == 3  # acked: no further delivery


async def test_failing_handler_parks_then_replay_reaches_only_that_service(
    transport: RabbitTransport,
) -> None:
    prefix = unique("t")
    failing_service = unique("svc")
    other_service = unique("svc")
    failing = Recorder(always_fail=True)
    other = Recorder()
    delays = (0.1, 0.2)
    await transport.subscribe(
        Subscription(failing_service, [f"{prefix}.#"], failing, retry_delays=delays)
    )
    await transport.subscribe(Subscription(other_service, [f"{prefix}.*.*"], other))

    event = make_event(f"{prefix}.invoice.issued", amount=10)
    before = datetime.now(UTC)
    await transport.publish(event)

    await depths_are(transport, failing_service, {"queue": 0, "dlq": 1})
    assert len(failing.events) == len(delays) + 1
    assert other.ids() == [event.id]

    letters = await transport.dead_letters(failing_service)
    assert len(letters) == 1
    letter = letters[0]
    assert letter.id == event.id
    assert letter.service == failing_service
    assert letter.reason == "handler-failed"
    assert letter.error == f"RuntimeError: cannot handle {event.type}"
    assert letter.attempts == len(delays)  # retries used
    assert letter.parked_at is not None and letter.parked_at >= before.replace(microsecond=0)
    assert letter.body == event.to_json_bytes()
    assert letter.headers["x-service"] == failing_service
    assert letter.headers["x-death-reason"] == "handler-failed"
    assert letter.headers["x-attempts"] == len(delays)
    assert letter.headers["traceparent"] == TRACEPARENT
    summary = letter.summary()
    assert summary["event_id"] == event.id and summary["type"] == event.type
    assert "data" not in summary and "body" not in summary
    # Listing does not remove.
    assert await transport.queue_depths(failing_service) == {"queue": 0, "dlq": 1}

    # Replay while it still fails: attempts were reset, so it is retried in full again.
    assert await transport.replay(failing_service) == 1
    await eventually(lambda: len(failing.events) == 2 * (len(delays) + 1), what="full retries")
    await depths_are(transport, failing_service, {"queue": 0, "dlq": 1})
    again = await transport.dead_letters(failing_service)
    assert [x.attempts for x in again] == [len(delays)]
    assert again[0].id == event.id

    # Fixed handler: replay delivers it once more, to the failing service only.
    failing.always_fail = False
    assert await transport.replay(failing_service, [event.id]) == 1
    await eventually(lambda: len(failing.events) == 2 * (len(delays) + 1) + 1, what="replay")
    await depths_are(transport, failing_service, {"queue": 0, "dlq": 0})
    await asyncio.sleep(0.3)
    assert other.ids() == [event.id]
    assert await transport.replay(failing_service) == 0


async def test_error_header_is_truncated(transport: RabbitTransport) -> None:
    prefix = unique("t")
    service = unique("svc")

    async def handler(event: CloudEvent) -> None:
        raise ValueError("x" * 5000)

    await transport.subscribe(Subscription(service, [f"{prefix}.#"], handler, retry_delays=()))
    await transport.publish(make_event(f"{prefix}.a.b"))
    await depths_are(transport, service, {"queue": 0, "dlq": 1})
    [letter] = await transport.dead_letters(service)
    assert len(letter.error) == MAX_ERROR_CHARS
    assert letter.error.startswith("ValueError: xxx")
    assert letter.attempts == 0


async def test_validation_error_does_not_leak_values(transport: RabbitTransport) -> None:
    from pydantic import BaseModel

    class Payload(BaseModel):
        age: int

    prefix = unique("t")
    service = unique("svc")

    async def handler(event: CloudEvent) -> None:
        event.payload(Payload)

    await transport.subscribe(Subscription(service, [f"{prefix}.#"], handler, retry_delays=()))
    await transport.publish(make_event(f"{prefix}.a.b", age="Jane Doe, HIV positive"))
    await depths_are(transport, service, {"queue": 0, "dlq": 1})
    [letter] = await transport.dead_letters(service)
    assert letter.error.startswith("ValidationError: 1 error(s): age: int_parsing")
    assert "Jane" not in letter.error


async def test_malformed_and_unknown_type_go_straight_to_dlq(
    transport: RabbitTransport, raw_channel: aio_pika.abc.AbstractChannel
) -> None:
    prefix = unique("t")
    service = unique("svc")
    calls: list[CloudEvent] = []

    async def handler(event: CloudEvent) -> None:
        calls.append(event)
        raise UnknownEventType(event.type)

    await transport.subscribe(
        Subscription(service, [f"{prefix}.#"], handler, retry_delays=(0.1, 0.1))
    )
    exchange = await raw_channel.get_exchange(transport.exchange_name)
    secret = b"{not json: patient Jane Doe"
    await exchange.publish(
        aio_pika.Message(secret, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        f"{prefix}.raw.bytes",
    )
    # Valid JSON, but not a CloudEvent.
    await exchange.publish(aio_pika.Message(b'{"hello": "world"}'), f"{prefix}.raw.json")
    unknown = make_event(f"{prefix}.never.heard_of")
    await transport.publish(unknown)

    await depths_are(transport, service, {"queue": 0, "dlq": 3})
    assert [e.id for e in calls] == [unknown.id]  # once: no retries for unknown types

    letters = await transport.dead_letters(service)
    by_reason: dict[str, list[str]] = {}
    for letter in letters:
        by_reason.setdefault(letter.reason, []).append(letter.id)
        assert "Jane" not in letter.error
    assert by_reason["unknown-type"] == [unknown.id]
    assert len(by_reason["malformed"]) == 2
    malformed = [x for x in letters if x.reason == "malformed"]
    assert malformed[0].body == secret
    assert malformed[0].error.startswith("JSONDecodeError")
    assert malformed[1].error.startswith("ValidationError")
    for letter in malformed:
        assert uuid.UUID(letter.id)  # a generated id
        assert letter.attempts == 0
        assert letter.summary()["event_id"] is None
    unknown_letter = next(x for x in letters if x.reason == "unknown-type")
    assert unknown_letter.attempts == 0

    # A malformed one can be found and replayed by its generated id; still malformed,
    # it is parked again (under a new generated id), behind the others.
    assert await transport.replay(service, [malformed[0].id]) == 1

    async def reparked() -> bool:
        ids = [x.id for x in await transport.dead_letters(service)]
        return len(ids) == 3 and malformed[0].id not in ids

    await eventually(reparked, what="the malformed message to be parked again")
    after = await transport.dead_letters(service)
    assert after[-1].reason == "malformed" and after[-1].body == secret


async def test_dead_letters_keep_order_and_limit(transport: RabbitTransport) -> None:
    prefix = unique("t")
    service = unique("svc")

    async def handler(event: CloudEvent) -> None:
        raise UnknownEventType(event.type)

    await transport.subscribe(
        Subscription(service, [f"{prefix}.#"], handler, retry_delays=(), prefetch=1)
    )
    events = [make_event(f"{prefix}.item.n{n}") for n in range(6)]
    for event in events:
        await transport.publish(event)
    await depths_are(transport, service, {"queue": 0, "dlq": 6})

    ids = [e.id for e in events]
    assert [x.id for x in await transport.dead_letters(service)] == ids
    assert [x.id for x in await transport.dead_letters(service)] == ids  # still in order
    assert [x.id for x in await transport.dead_letters(service, limit=2)] == ids[:2]
    assert await transport.dead_letters(service, limit=0) == []
    # Replaying a subset leaves the others parked, in their order.
    assert await transport.replay(service, [ids[1], ids[4]]) == 2
    await depths_are(transport, service, {"queue": 0, "dlq": 6})
    remaining = [x.id for x in await transport.dead_letters(service)]
    assert remaining[:4] == [ids[0], ids[2], ids[3], ids[5]]
    assert sorted(remaining[4:]) == sorted([ids[1], ids[4]])  # re-parked at the tail
    assert await transport.dead_letters(unique("nobody")) == []
    assert await transport.queue_depths(unique("nobody")) == {"queue": 0, "dlq": 0}


async def test_graceful_drain_lets_in_flight_handler_finish(amqp_url: str) -> None:
    prefix = unique("t")
    service = unique("svc")
    started = asyncio.Event()
    finished: list[str] = []

    async def slow(event: CloudEvent) -> None:
        started.set()
        await asyncio.sleep(1.0)
        finished.append(event.id)

    consumer = RabbitTransport(amqp_url, drain_timeout=5.0)
    observer = RabbitTransport(amqp_url)
    await consumer.connect()
    await observer.connect()
    try:
        await consumer.subscribe(Subscription(service, [f"{prefix}.#"], slow))
        event = make_event(f"{prefix}.slow.job")
        await observer.publish(event)
        await asyncio.wait_for(started.wait(), TIMEOUT)

        began = time.monotonic()
        await asyncio.wait_for(consumer.close(), TIMEOUT)
        assert finished == [event.id]  # close returned only after the handler finished
        assert time.monotonic() - began >= 0.5
        assert not consumer.connected and not consumer.consuming

        # It was acked (not requeued), and nothing consumes any more.
        later = make_event(f"{prefix}.slow.job")
        await observer.publish(later)
        await depths_are(observer, service, {"queue": 1, "dlq": 0})
        assert finished == [event.id]
    finally:
        await consumer.close()
        await observer.close()


async def test_drain_timeout_requeues_unfinished(amqp_url: str) -> None:
    prefix = unique("t")
    service = unique("svc")
    started = asyncio.Event()

    async def stuck(event: CloudEvent) -> None:
        started.set()
        await asyncio.sleep(60)

    consumer = RabbitTransport(amqp_url, drain_timeout=0.3)
    observer = RabbitTransport(amqp_url)
    await consumer.connect()
    await observer.connect()
    try:
        await consumer.subscribe(Subscription(service, [f"{prefix}.#"], stuck))
        await observer.publish(make_event(f"{prefix}.stuck.job"))
        await asyncio.wait_for(started.wait(), TIMEOUT)
        await asyncio.wait_for(consumer.close(), TIMEOUT)
        await depths_are(observer, service, {"queue": 1, "dlq": 0})  # not lost
    finally:
        await consumer.close()
        await observer.close()


@pytest.mark.slow
async def test_broker_restart_consumers_resume_and_nothing_confirmed_is_lost(
    amqp_url: str, rabbitmqctl: Callable[..., object]
) -> None:
    prefix = unique("t")
    service = unique("svc")
    received: set[str] = set()

    async def handler(event: CloudEvent) -> None:
        received.add(event.id)

    consumer = RabbitTransport(amqp_url, reconnect_interval=0.5, publish_timeout=2.0)
    publisher = RabbitTransport(amqp_url, reconnect_interval=0.5, publish_timeout=2.0)
    await consumer.connect()
    await publisher.connect()
    confirmed: list[str] = []
    failures = 0
    saw_not_consuming = False
    stop = asyncio.Event()

    async def produce() -> None:
        """Publish a stream, retrying each event until confirmed (like the outbox relay)."""
        nonlocal failures
        n = 0
        while not stop.is_set():
            event = make_event(f"{prefix}.vitals.recorded", n=n)
            while True:
                try:
                    await publisher.publish(event)
                    break
                except PublishError:
                    failures += 1
                    await asyncio.sleep(0.2)
            confirmed.append(event.id)
            n += 1
            await asyncio.sleep(0.02)

    async def ctl(*args: str) -> None:
        await asyncio.to_thread(rabbitmqctl, *args)

    try:
        await consumer.subscribe(Subscription(service, [f"{prefix}.#"], handler))
        producer = asyncio.create_task(produce())
        await eventually(lambda: len(received) >= 20, what="traffic before the restart")

        try:
            await ctl("stop_app")

            async def down() -> bool:
                nonlocal saw_not_consuming
                if not consumer.consuming and not publisher.connected:
                    saw_not_consuming = True
                return saw_not_consuming

            await eventually(down, what="the transports to notice the outage")
            await asyncio.sleep(1.0)  # publishes fail meanwhile
        finally:
            await ctl("start_app")

        await eventually(lambda: consumer.consuming, within=30, what="consumer recovery")
        count_after = len(confirmed)
        await eventually(
            lambda: len(confirmed) >= count_after + 20, within=30, what="publishing resumed"
        )
        stop.set()
        await asyncio.wait_for(producer, TIMEOUT)
        await eventually(
            lambda: received >= set(confirmed), within=30, what="every confirmed event"
        )
        assert saw_not_consuming
        assert failures > 0  # publishes during the outage raised PublishError
        assert publisher.connected and consumer.consuming
    finally:
        stop.set()
        await consumer.close()
        await publisher.close()


async def test_cli_list_show_and_replay(
    transport: RabbitTransport,
    amqp_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = unique("t")
    service = unique("svc")
    recorder = Recorder(always_fail=True)
    await transport.subscribe(Subscription(service, [f"{prefix}.#"], recorder, retry_delays=()))
    events = [make_event(f"{prefix}.note.signed", secret="diagnosis") for _ in range(2)]
    for event in events:
        await transport.publish(event)
    await depths_are(transport, service, {"queue": 0, "dlq": 2})

    monkeypatch.setenv("AMQP_URL", amqp_url)
    monkeypatch.setenv("TRANSPORT", "rabbitmq")
    run = cli.main

    capsys.readouterr()
    assert await asyncio.to_thread(run, ["list", service]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [x["id"] for x in lines] == [e.id for e in events]
    assert all(x["reason"] == "handler-failed" for x in lines)
    assert all("secret" not in json.dumps(x) for x in lines)

    assert await asyncio.to_thread(run, ["list", service, "--limit", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1

    assert await asyncio.to_thread(run, ["show", service, events[0].id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["envelope"]["id"] == events[0].id
    assert "data" not in shown["envelope"] and "diagnosis" not in json.dumps(shown)
    assert shown["reason"] == "handler-failed" and shown["attempts"] == 0

    assert await asyncio.to_thread(run, ["show", service, events[0].id, "--with-data"]) == 0
    assert json.loads(capsys.readouterr().out)["envelope"]["data"] == {"secret": "diagnosis"}

    assert await asyncio.to_thread(run, ["show", service, "no-such-id"]) == 1

    recorder.always_fail = False
    assert await asyncio.to_thread(run, ["replay", service, events[1].id]) == 0
    assert json.loads(capsys.readouterr().out) == {"replayed": 1, "missing": []}
    await eventually(lambda: events[1].id in recorder.ids()[2:], what="replayed delivery")
    assert await asyncio.to_thread(run, ["replay", service, "--all"]) == 0
    assert json.loads(capsys.readouterr().out)["replayed"] == 1
    await depths_are(transport, service, {"queue": 0, "dlq": 0})
    assert sorted(recorder.ids()[2:]) == sorted(e.id for e in events)

    assert await asyncio.to_thread(run, ["replay", service]) == 2  # neither ids nor --all
    assert await asyncio.to_thread(run, ["replay", service, "missing-id"]) == 1


def test_queue_names() -> None:
    assert queue_name("audit") == "healthflow.audit"
    assert retry_queue_name("audit", 1.0) == "healthflow.audit.delay.1000ms"
    assert retry_queue_name("audit", 0.25) == "healthflow.audit.delay.250ms"
