"""A service that starts before its database waits for it instead of dying."""

from __future__ import annotations

import asyncio

from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import ServiceSettings
from healthflow.devkit.embedded import EmbeddedMongo, free_port


async def test_start_waits_for_a_database_that_comes_up_late(unique_name):
    port = free_port()
    url = f"mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=500"
    runtime = ServiceRuntime(ServiceSettings(service_name=unique_name, mongodb_url=url,
                                             transport="inprocess"))
    starting = asyncio.create_task(runtime.start())
    await asyncio.sleep(1.5)
    assert not starting.done(), "start-up should still be waiting for MongoDB"
    server = await asyncio.to_thread(EmbeddedMongo(":memory:", port=port).start)
    try:
        await asyncio.wait_for(starting, timeout=30)
        assert runtime.started
        checks = await runtime.readiness()
        assert checks["mongodb"] == "ok"
    finally:
        await runtime.stop()
        await runtime.transport.close()
        server.stop()
