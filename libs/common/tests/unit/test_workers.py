"""A :class:`~healthflow.common.workers.Loop` stops even when a step loses its cancellation.

CI hung for 15 minutes on exactly this: PyMongo's async network layer swallowed the
cancel sent during a reminder pass, the pass returned, and the loop went to sleep for
its hour-long test interval with ``stop()`` awaiting it.
"""

from __future__ import annotations

import asyncio

from healthflow.common.workers import Loop


async def stopped_within(loop: Loop, seconds: float) -> bool:
    """Whether ``loop.stop()`` returned by itself within ``seconds`` (never cancelled from
    outside: that cancel would reach the loop's task and hide a hang)."""
    task = loop._task
    stopper = asyncio.create_task(loop.stop())
    done, _ = await asyncio.wait({stopper}, timeout=seconds)
    if stopper not in done and task is not None:
        task.cancel()  # clean up the hung loop so the test ends
        await asyncio.wait({stopper}, timeout=5)
    return stopper in done


async def test_a_loop_whose_step_swallows_the_cancel_still_stops_promptly() -> None:
    started = asyncio.Event()
    swallowed = 0

    async def step() -> bool:
        nonlocal swallowed
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed += 1  # as the library did: the cancel is dropped, the step returns
        return False

    loop = Loop("swallower", step, interval=3600)
    await loop.start()
    await started.wait()
    assert await stopped_within(loop, 10), "stop() waited on a loop that lost its cancel"
    assert swallowed == 1 and not loop.running


async def test_a_loop_that_swallows_every_cancel_is_cancelled_again_until_it_ends() -> None:
    """A step that drops the first cancels and sleeps again is cancelled once more each
    second; ``stop()`` returns once one cancel is obeyed."""
    dropped = 0

    async def step() -> bool:
        nonlocal dropped
        while dropped < 2:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                dropped += 1
        await asyncio.sleep(30)  # the third cancel ends it
        return False

    loop = Loop("stubborn", step, interval=3600)
    await loop.start()
    await asyncio.sleep(0.05)
    assert await stopped_within(loop, 10), "stop() waited on a loop that lost its cancel"
    assert dropped == 2 and not loop.running


async def test_a_loop_keeps_stepping_until_stopped() -> None:
    calls = 0

    async def step() -> bool:
        nonlocal calls
        calls += 1
        return False

    loop = Loop("ticker", step, interval=0.01)
    await loop.start()
    await asyncio.sleep(0.2)
    await loop.stop()
    seen = calls
    await asyncio.sleep(0.05)
    assert seen >= 3 and calls == seen and not loop.running
