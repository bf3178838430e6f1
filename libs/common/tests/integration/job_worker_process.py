"""A job worker process for the crash test: claims one job, records that it started, and
hangs inside the job's transaction until it is killed.

Usage: python job_worker_process.py MONGODB_URL DATABASE LEASE_SECONDS
Prints ``started <job id>`` once the handler runs (stdout, line-buffered).
"""

from __future__ import annotations

import asyncio
import sys

from healthflow.common import jobs
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import ServiceSettings


async def main(mongodb_url: str, database: str, lease: float) -> None:
    settings = ServiceSettings(service_name="jobcrash", mongodb_url=mongodb_url,
                               mongodb_database=database, transport="inprocess")
    runtime = ServiceRuntime(settings, indexes=jobs.INDEXES)

    async def hang(uow: UnitOfWork, job: jobs.Job) -> None:
        await uow.db.effects.insert_one({"job": job.id, "by": "doomed"}, session=uow.session)
        print(f"started {job.id}", flush=True)
        await asyncio.sleep(3600)  # killed here, mid-job, before the commit

    worker = jobs.JobWorker(runtime, "crash", hang, lease=lease)
    await worker.run_once()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
