"""One circuit breaker per upstream, on the ``purgatory`` library (asyncio).

States (purgatory's state machine): **closed** — calls pass, consecutive
failures are counted and a success resets the count; after
``threshold`` consecutive failures the circuit **opens** — calls fail at once
with :class:`CircuitOpen` (the gateway answers 503 problem+json with
``Retry-After``) without touching the upstream; ``reset_seconds`` after opening
it is **half-open** — the next call goes through as a probe: success closes
the circuit, failure opens it again for another ``reset_seconds``.

A failure is whatever the caller raises inside :meth:`Breakers.guard` except
the exception types it declares as not the upstream's fault (a client that
disconnects, a body over the limit).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from prometheus_client import Gauge
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

BREAKER_OPEN = Gauge(
    "healthflow_gateway_circuit_open", "1 while the circuit toward an upstream is open",
    ["upstream"],
)


class CircuitOpen(Exception):
    """The circuit toward ``upstream`` is open; retry after ``retry_after`` seconds."""

    def __init__(self, upstream: str, retry_after: int) -> None:
        super().__init__(f"the circuit toward {upstream} is open")
        self.upstream = upstream
        self.retry_after = retry_after


class Breakers:
    """The gateway's circuit breakers, one per upstream name (created on first use)."""

    def __init__(
        self,
        *,
        threshold: int,
        reset_seconds: float,
        not_failures: Sequence[type[BaseException]] = (),
    ) -> None:
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=threshold,
            default_ttl=reset_seconds,
            exclude=list(not_failures),
        )

    @asynccontextmanager
    async def guard(self, upstream: str) -> AsyncIterator[None]:
        """Run the body as one call to ``upstream`` through its breaker.

        Raises:
            CircuitOpen: the circuit is open (the body does not run).
        """
        breaker = await self._factory.get_breaker(upstream)
        try:
            async with breaker:
                yield
        except OpenedState as exc:
            BREAKER_OPEN.labels(upstream).set(1)
            remaining = exc.opened_at + self.reset_seconds - time.time()
            raise CircuitOpen(upstream, max(1, math.ceil(remaining))) from None
        finally:
            BREAKER_OPEN.labels(upstream).set(1 if breaker.context.state == "opened" else 0)

    async def state(self, upstream: str) -> str:
        """``closed``, ``opened`` or ``half-opened``."""
        breaker = await self._factory.get_breaker(upstream)
        return str(breaker.context.state)
