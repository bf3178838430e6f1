"""Background work of a service: workers the :class:`~healthflow.common.service.ServiceRuntime`
starts after it is connected and stops before it disconnects.

A service registers its workers once, in its ``app.py``
(``runtime.add_worker(Loop("notification-dispatch", dispatcher.run_due, interval=1.0))``);
nothing patches the app's lifespan. Two kinds cover what the services do today:

* :class:`Loop` — call ``step()`` again and again: at once while it reports work
  done (a truthy result: a full batch, more may be due), otherwise after
  ``interval`` seconds or as soon as its ``wakeup`` event is set. A step that
  raises is logged with the worker's name and the loop goes on; a step never
  ends the loop silently.
* :class:`Hooks` — a start and a stop coroutine (a key ring's reload timer, the
  channel clients' sessions), for work that is not a loop.

Job queues with leases (:mod:`healthflow.common.jobs`) run as a :class:`Loop`
over :meth:`~healthflow.common.jobs.JobWorker.run_once`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

STOP_RECANCEL_SECONDS = 1.0
"""How often :meth:`Loop.stop` repeats a cancellation the loop has not yet obeyed."""


class Worker(Protocol):
    """Something the runtime starts after connecting and stops before disconnecting."""

    name: str

    async def start(self) -> None:
        """Begin (return promptly; run in tasks of your own)."""
        ...

    async def stop(self) -> None:
        """End and wait until done (the runtime awaits this at shutdown)."""
        ...


class Loop:
    """Calls ``step`` in a loop (see the module docstring); ``interval`` in seconds."""

    def __init__(self, name: str, step: Callable[[], Awaitable[Any]], *, interval: float,
                 wakeup: asyncio.Event | None = None) -> None:
        if interval <= 0:
            raise ValueError("a loop's interval must be positive seconds")
        self.name = name
        self.step = step
        self.interval = interval
        self.wakeup = wakeup
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the loop and wait until it ended.

        A cancellation can be lost inside a step: Python 3.11's ``asyncio.wait_for`` drops
        one that races with its awaited event, and PyMongo's async network layer has
        swallowed one during a reply. The flag ends the loop after such a step, and
        :func:`cancel_and_wait` repeats the cancel until the task is done, so a lost one
        cannot leave it asleep for ``interval`` (an hour in some tests).
        """
        self._stopping = True
        if self.wakeup is not None:
            self.wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    async def _run(self) -> None:
        while not self._stopping:
            if self.wakeup is not None:
                self.wakeup.clear()  # a wake during the step makes the wait return at once
            try:
                if await self.step():
                    continue  # more may be due: go on without waiting
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker step failed", extra={"worker": self.name})
            if self._stopping:
                return
            if self.wakeup is None:
                await asyncio.sleep(self.interval)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=self.interval)


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again every
    :data:`STOP_RECANCEL_SECONDS` while it has not (a cancel lost inside a library call
    must not leave a stop waiting out a long sleep). Whatever the task raised on the way
    out is the task's business: a :class:`asyncio.CancelledError` is expected, anything
    else was logged where it happened."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=STOP_RECANCEL_SECONDS)
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Hooks:
    """A worker made of a ``start`` and a ``stop`` coroutine function."""

    def __init__(self, name: str, start: Callable[[], Awaitable[None]],
                 stop: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self._start = start
        self._stop = stop

    async def start(self) -> None:
        await self._start()

    async def stop(self) -> None:
        await self._stop()
