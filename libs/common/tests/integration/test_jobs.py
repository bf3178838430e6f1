"""The leased job queue and the runtime's workers, against the real MongoDB-protocol server."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from healthflow.common import jobs
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import ServiceSettings
from healthflow.common.workers import Hooks, Loop
from healthflow.devkit.testing import eventually

WORKER_PROCESS = Path(__file__).with_name("job_worker_process.py")


@pytest.fixture
async def runtime(mongodb_url: str, unique_name: str) -> AsyncIterator[ServiceRuntime]:
    settings = ServiceSettings(service_name="jobs", mongodb_url=mongodb_url,
                               mongodb_database=f"jobs_{unique_name}", transport="inprocess")
    runtime = ServiceRuntime(settings, indexes=jobs.INDEXES)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def effects(runtime: ServiceRuntime) -> list[str]:
    return [d["by"] async for d in runtime.db.effects.find({})]


async def test_a_job_enqueued_with_its_cause_is_done_once_with_its_effect(
        runtime: ServiceRuntime) -> None:
    async def cause(uow: UnitOfWork) -> None:
        await uow.db.orders.insert_one({"_id": "o-1"}, session=uow.session)
        await jobs.enqueue(uow.db, "follow-up", {"order": "o-1"}, key="follow-up:o-1",
                           session=uow.session)
        # the same key again (a redelivered event) adds nothing
        await jobs.enqueue(uow.db, "follow-up", {"order": "o-1"}, key="follow-up:o-1",
                           session=uow.session)

    await runtime.transact(cause)

    async def handle(uow: UnitOfWork, job: jobs.Job) -> None:
        await uow.db.effects.insert_one({"by": job.payload["order"]}, session=uow.session)

    worker = jobs.JobWorker(runtime, "follow-up", handle)
    other = jobs.JobWorker(runtime, "follow-up", handle)  # a second replica races for it
    assert sorted(await asyncio.gather(worker.run_once(), other.run_once())) == [0, 1]
    assert await worker.run_once() == 0
    assert await effects(runtime) == ["o-1"]
    job = await runtime.db[jobs.JOBS].find_one({"_id": "follow-up:o-1"})
    assert job["status"] == "done" and job["attempts"] == 1 and job["done_at"] is not None


async def test_a_job_due_later_waits_for_its_time(runtime: ServiceRuntime) -> None:
    now = utcnow()
    clock = [now]
    await jobs.enqueue(runtime.db, "later", {}, run_at=now + timedelta(minutes=5), now=now)

    async def handle(uow: UnitOfWork, job: jobs.Job) -> None:
        await uow.db.effects.insert_one({"by": job.id}, session=uow.session)

    worker = jobs.JobWorker(runtime, "later", handle, clock=lambda: clock[0])
    assert await worker.run_once() == 0
    clock[0] = now + timedelta(minutes=5)
    assert await worker.run_once() == 1


async def test_failures_back_off_then_the_job_is_dead_listed_and_replayable(
        runtime: ServiceRuntime, caplog: pytest.LogCaptureFixture) -> None:
    now = utcnow()
    clock = [now]
    job_id = await jobs.enqueue(runtime.db, "flaky", {"n": 1}, now=now)
    failing = [True]

    async def handle(uow: UnitOfWork, job: jobs.Job) -> None:
        await uow.db.effects.insert_one({"by": "attempt"}, session=uow.session)
        if failing[0]:
            raise RuntimeError("the provider said no")

    worker = jobs.JobWorker(runtime, "flaky", handle, max_attempts=3, retry_base=10,
                            clock=lambda: clock[0])
    assert await worker.run_once() == 0
    doc = await runtime.db[jobs.JOBS].find_one({"_id": job_id})
    assert doc["status"] == "queued" and doc["attempts"] == 1
    assert doc["run_at"] == now + timedelta(seconds=10)
    assert "the provider said no" in doc["last_error"]
    assert await effects(runtime) == []  # the failed attempt's writes were rolled back
    clock[0] = now + timedelta(seconds=10)
    assert await worker.run_once() == 0
    doc = await runtime.db[jobs.JOBS].find_one({"_id": job_id})
    assert doc["run_at"] == clock[0] + timedelta(seconds=20)  # doubled
    clock[0] = doc["run_at"]
    with caplog.at_level(logging.ERROR, logger="healthflow.common.jobs"):
        assert await worker.run_once() == 0
    assert any("dead" in r.getMessage() for r in caplog.records)
    assert [d["_id"] for d in await jobs.dead_jobs(runtime.db, "flaky")] == [job_id]
    clock[0] += timedelta(days=1)
    assert await worker.run_once() == 0  # dead jobs are not retried

    failing[0] = False
    assert await jobs.replay(runtime.db, job_id, now=clock[0]) is True
    assert await jobs.replay(runtime.db, job_id, now=clock[0]) is False  # not dead any more
    assert await worker.run_once() == 1
    assert await effects(runtime) == ["attempt"]
    assert await jobs.dead_jobs(runtime.db) == []


async def test_prepare_runs_outside_the_transaction_and_hands_its_result_to_the_handler(
        runtime: ServiceRuntime) -> None:
    """Long work (a download, an analysis) goes in ``prepare``: its own writes commit even
    when the handler's transaction then fails, and the handler gets what it returned."""
    job_id = await jobs.enqueue(runtime.db, "two-phase", {"n": 2})
    failing = [True]

    async def prepare(job: jobs.Job) -> int:
        await runtime.transact(lambda uow: uow.db.effects.insert_one(
            {"by": "prepare"}, session=uow.session))
        return int(job.payload["n"]) * 21

    async def handle(uow: UnitOfWork, job: jobs.Job) -> None:
        await uow.db.effects.insert_one({"by": f"handler:{job.prepared}"}, session=uow.session)
        if failing[0]:
            raise RuntimeError("no")

    clock = [utcnow()]
    worker = jobs.JobWorker(runtime, "two-phase", handle, prepare=prepare, retry_base=1,
                            clock=lambda: clock[0])
    assert await worker.run_once() == 0
    assert await effects(runtime) == ["prepare"]  # outside the rolled-back transaction
    failing[0], clock[0] = False, clock[0] + timedelta(seconds=5)
    assert await worker.run_once() == 1
    assert sorted(await effects(runtime)) == ["handler:42", "prepare", "prepare"]
    assert (await runtime.db[jobs.JOBS].find_one({"_id": job_id}))["status"] == "done"


async def test_a_long_prepare_keeps_its_lease_so_no_other_worker_runs_the_job(
        runtime: ServiceRuntime) -> None:
    """A live run longer than its lease renews it: another replica claims nothing, and
    the job is done once, at its first attempt."""
    job_id = await jobs.enqueue(runtime.db, "long", {})
    other_claimed: list[int] = []

    async def handle(uow: UnitOfWork, job: jobs.Job) -> None:
        await uow.db.effects.insert_one({"by": "long"}, session=uow.session)

    other = jobs.JobWorker(runtime, "long", handle, lease=0.6)

    async def prepare(job: jobs.Job) -> None:
        for _ in range(3):  # 1.5 s in all, 2.5 leases
            await asyncio.sleep(0.5)
            other_claimed.append(await other.run_once())

    worker = jobs.JobWorker(runtime, "long", handle, prepare=prepare, lease=0.6)
    assert await worker.run_once() == 1
    assert other_claimed == [0, 0, 0]
    doc = await runtime.db[jobs.JOBS].find_one({"_id": job_id})
    assert (doc["status"], doc["attempts"]) == ("done", 1)
    assert await effects(runtime) == ["long"]


async def test_a_run_that_loses_its_lease_counts_as_an_attempt_until_the_job_is_dead(
        runtime: ServiceRuntime) -> None:
    """A run that outlives its lease (another worker claims the job meanwhile) commits
    nothing and is counted, so a job that always does ends dead instead of running (and
    leaking what it makes outside the database) for ever."""
    now = utcnow()
    clock = [now]
    job_id = await jobs.enqueue(runtime.db, "slow", {}, now=now)

    async def prepare(job: jobs.Job) -> None:  # takes longer than the lease: another
        clock[0] += timedelta(seconds=61)       # worker claims the job meanwhile
        doc = await runtime.db[jobs.JOBS].find_one({"_id": job.id})
        assert await jobs.claim(runtime.db, jobs.JOBS, doc, due_field="run_at", now=clock[0],
                                owner="other", lease_until=clock[0] + timedelta(seconds=60))

    async def handle(uow: UnitOfWork, job: jobs.Job) -> None:
        await uow.db.effects.insert_one({"by": "slow"}, session=uow.session)

    worker = jobs.JobWorker(runtime, "slow", handle, prepare=prepare, lease=60,
                            max_attempts=2, clock=lambda: clock[0])
    assert await worker.run_once() == 0
    doc = await runtime.db[jobs.JOBS].find_one({"_id": job_id})
    assert (doc["status"], doc["attempts"], doc["lease_owner"]) == ("queued", 1, "other")
    assert "lease lost" in doc["last_error"]
    clock[0] += timedelta(seconds=61)  # the other worker's lease ran out too
    assert await worker.run_once() == 0
    doc = await runtime.db[jobs.JOBS].find_one({"_id": job_id})
    assert (doc["status"], doc["attempts"]) == ("dead", 2)
    assert await effects(runtime) == []


async def test_a_worker_killed_mid_job_is_taken_over_after_its_lease_and_done_once(
        runtime: ServiceRuntime, mongodb_url: str) -> None:
    job_id = await jobs.enqueue(runtime.db, "crash", {"n": 1})
    lease = 3.0
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER_PROCESS), mongodb_url, runtime.settings.database_name,
        str(lease), stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        assert line.decode().strip() == f"started {job_id}"
        process.send_signal(signal.SIGKILL)  # mid-job: its transaction never commits
        await asyncio.wait_for(process.wait(), timeout=10)
    finally:
        if process.returncode is None:
            process.kill()

    async def handle(uow: UnitOfWork, job: jobs.Job) -> None:
        await uow.db.effects.insert_one({"job": job.id, "by": "survivor"}, session=uow.session)

    survivor = jobs.JobWorker(runtime, "crash", handle, lease=lease)
    held = await runtime.db[jobs.JOBS].find_one({"_id": job_id})
    assert held["lease_owner"].startswith("jobcrash-")
    assert await survivor.run_once() == 0  # still leased to the dead worker
    # The dead worker's open transaction keeps its writes locked until the server ends it
    # (its transaction lifetime, 60 s by default, as on MongoDB): the take-over waits it out.
    await eventually(survivor.run_once, within=lease + 90, interval=0.2,
                     message="the job was never taken over after its lease")
    assert await effects(runtime) == ["survivor"]  # the doomed attempt left nothing
    assert await survivor.run_once() == 0
    done = await runtime.db[jobs.JOBS].find_one({"_id": job_id})
    assert done["status"] == "done" and done["lease_owner"] is None


async def test_the_runtime_starts_its_workers_after_connecting_and_stops_them_first(
        mongodb_url: str, unique_name: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = ServiceSettings(service_name="workers", mongodb_url=mongodb_url,
                               mongodb_database=f"workers_{unique_name}", transport="inprocess")
    runtime = ServiceRuntime(settings)
    seen: list[str] = []
    steps = 0

    async def step() -> bool:
        nonlocal steps
        steps += 1
        if steps == 2:
            raise RuntimeError("one bad pass")  # logged; the loop goes on
        return False

    async def started() -> None:
        seen.append(f"started, connected={runtime.transport.connected}")

    async def stopped() -> None:
        seen.append("stopped")

    runtime.add_worker(Hooks("hooks", started, stopped))
    loop = runtime.add_worker(Loop("ticker", step, interval=0.05))
    with pytest.raises(ValueError, match="registered already"):
        runtime.add_worker(Loop("ticker", step, interval=1))
    with caplog.at_level(logging.ERROR, logger="healthflow.common.workers"):
        await runtime.start()
        await eventually(lambda: steps >= 4, within=5, message="the loop did not go on")
    assert seen == ["started, connected=True"]
    assert any(getattr(r, "worker", None) == "ticker" for r in caplog.records)
    assert runtime.worker("ticker") is loop
    await runtime.stop()
    assert seen[-1] == "stopped" and not loop.running  # type: ignore[attr-defined]
    count = steps
    await asyncio.sleep(0.2)
    assert steps == count
