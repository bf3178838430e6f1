"""Two paramedic replicas as competing consumers of one RabbitMQ queue (a virtual host
of this test's own), sharing one database: 30 emergencies raised at once for 5 units
never give a unit twice; a decline on one replica frees a unit that an escalation
retry on either replica hands to a waiting emergency."""

from __future__ import annotations

import uuid
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime

from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.rabbit.transport import RabbitTransport
from healthflow.devkit.testing import TokenFactory, eventually, running_app
from healthflow.paramedic.app import create_app
from healthflow.paramedic.settings import Settings

from .conftest import HELSINKI, Paramedics, offset


def raised(emergency_id: str, lat: float, lon: float) -> CloudEvent:
    return CloudEvent(source="/healthflow/emergency", type="emergency.raised", data={
        "emergency_id": emergency_id, "priority": "P2", "latitude": lat, "longitude": lon,
        "accuracy_m": 10.0, "raised_by_role": "dispatcher", "patient_id": None,
        "raised_at": datetime.now(UTC).isoformat()})


async def open_tasks(para: Paramedics) -> Counter[str]:
    tasks = await para.runtime.db["tasks"].find(
        {"status": {"$in": ["offered", "accepted"]}}).to_list()
    return Counter(t["unit_id"] for t in tasks)


async def test_two_replicas_on_rabbitmq_never_share_a_unit(
        mongodb_url: str, unique_name: str, fresh_amqp_url: str, tokens: TokenFactory) -> None:
    async with AsyncExitStack() as stack:
        replicas = []
        for i in range(2):
            transport = RabbitTransport(fresh_amqp_url, connection_name=f"paramedic-{i}")
            stack.push_async_callback(transport.close)
            app = create_app(Settings(
                mongodb_url=mongodb_url, mongodb_database=unique_name, transport="rabbitmq",
                amqp_url=fresh_amqp_url, road_graph="", outbox_poll_interval=0.2,
                # retries far enough apart that the 25 escalated emergencies are all
                # escalated at once at some moment, even on a loaded machine (at 1 s
                # they were made pending again faster than one assigner re-escalated
                # them, so "all offered or escalated" was never seen at one instant)
                escalation_retry_s=8.0, timer_interval_s=0.2), transport=transport)
            app.state.verifier = tokens.verifier()
            client = await stack.enter_async_context(running_app(app))
            replicas.append(Paramedics(client, app.state.runtime, tokens))
        a, b = replicas
        publisher = RabbitTransport(fresh_amqp_url, connection_name="paramedic-test-publisher")
        stack.push_async_callback(publisher.close)
        await publisher.connect()

        units = [await a.unit(*offset(*HELSINKI, north_m=200 * i)) for i in range(5)]
        ids = [f"e-{i}-{uuid.uuid4().hex[:6]}" for i in range(30)]
        for i, eid in enumerate(ids):
            await publisher.publish(raised(eid, *offset(*HELSINKI, east_m=30 * i)))

        async def settled() -> bool:
            return await a.runtime.db["assignments"].count_documents(
                {"status": {"$in": ["offered", "escalated"]}}) == len(ids)

        await eventually(settled, within=60, message="an emergency was lost")
        busy = await open_tasks(a)
        assert sorted(busy) == sorted(units) and set(busy.values()) == {1}, busy
        assert await a.runtime.db["tasks"].count_documents({}) == 5

        # A decline on replica b frees a unit; an escalation retry gives it to another.
        task = await a.runtime.db["tasks"].find_one({"unit_id": units[0]})
        assert task is not None
        declined = await b.client.post(f"/api/v1/paramedics/me/tasks/{task['_id']}/decline",
                                       headers=b.me(units[0]))
        assert declined.status_code == 200, declined.text

        async def reoffered() -> bool:
            again = await a.runtime.db["tasks"].find_one(
                {"unit_id": units[0], "status": "offered"})
            return again is not None and again["emergency_id"] != task["emergency_id"]

        await eventually(reoffered, within=40, message="the freed unit was never offered again")
        busy = await open_tasks(a)
        assert set(busy.values()) == {1}, busy
