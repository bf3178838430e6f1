"""A producer process for the crash test: commits events through the outbox until killed.

Usage: python producer_process.py MONGODB_URL AMQP_URL SERVICE COUNT
Prints ``committed <n>`` after each round of commits (stdout, line-buffered).
"""

from __future__ import annotations

import asyncio
import sys

from healthflow.common.events.envelope import EventPayload, event_type
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import ServiceSettings


@event_type("crash.test_happened")
class CrashTestHappened(EventPayload):
    n: int


async def main(mongodb_url: str, amqp_url: str, service: str, count: int) -> None:
    settings = ServiceSettings(service_name=service, mongodb_url=mongodb_url, amqp_url=amqp_url,
                               transport="rabbitmq", outbox_batch_size=5,
                               outbox_lease=3.0)
    runtime = ServiceRuntime(settings)
    await runtime.start()
    committed = 0
    while committed < count:
        async def write(uow: UnitOfWork, n: int) -> None:
            await uow.db.things.insert_one({"n": n}, session=uow.session)
            uow.publish(CrashTestHappened(n=n), subject=str(n))

        batch = range(committed, min(count, committed + 20))
        await asyncio.gather(*(runtime.transact(lambda uow, n=n: write(uow, n)) for n in batch))
        committed += len(batch)
        print(f"committed {committed}", flush=True)
    await asyncio.sleep(3600)  # wait to be killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
