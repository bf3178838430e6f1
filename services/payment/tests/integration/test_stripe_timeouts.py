"""A Stripe that accepts connections and never answers: each call gives up after the
configured timeout and is retried a bounded number of times (stripe library retries)."""

from __future__ import annotations

import asyncio
import time

import pytest
import stripe

from healthflow.common.problems import ServiceUnavailable
from healthflow.payment.provider import Stripe
from healthflow.payment.settings import Settings


async def test_a_silent_stripe_times_out_after_bounded_retries() -> None:
    connections = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await asyncio.sleep(30)  # never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    adapter = Stripe(Settings(stripe_api_base=f"http://127.0.0.1:{port}",
                              stripe_timeout_seconds=0.5, stripe_max_retries=1))
    began = time.monotonic()
    with pytest.raises(ServiceUnavailable) as raised:  # a 503 with Retry-After
        await adapter.retrieve_intent("pi_silent")
    assert isinstance(raised.value.__cause__, stripe.APIConnectionError)
    elapsed = time.monotonic() - began
    server.close()
    assert connections == 2  # the call and one retry
    assert elapsed < 5, elapsed  # not the library's 80 s default
