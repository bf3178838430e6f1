"""The prescription client against real local HTTP servers that misbehave: a body
trickled slower than the whole-exchange budget, a proxy named in the environment."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from healthflow.records.prescriptions import PrescriptionClient, PrescriptionsUnavailable

from .conftest import closed_port

PAGE = json.dumps({"items": [], "next_cursor": None}).encode()
Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[str]:
    """A real TCP server on a free local port answering each connection with ``answer``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            await answer(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A valid page, one byte every 0.2 s: each read is quick, the whole is not."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(PAGE))
    for byte in PAGE:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.2)


async def page(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(PAGE) + PAGE)
    await writer.drain()


async def test_the_whole_exchange_is_bounded_not_each_read() -> None:
    async with serving(trickle) as url:
        client = PrescriptionClient(url, timeout=1.0)
        await client.start()
        started = time.monotonic()
        try:
            with pytest.raises(PrescriptionsUnavailable, match="timed out"):
                await client.page("token", "p1", None, 10)
        finally:
            await client.close()
    assert time.monotonic() - started < 2.0


async def test_a_proxy_in_the_environment_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bearer token goes straight to the prescription service, never to a proxy
    named by ``HTTP_PROXY`` / ``ALL_PROXY``."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{closed_port()}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with serving(page) as url:
        client = PrescriptionClient(url, timeout=2.0)
        await client.start()
        try:
            assert await client.page("token", "p1", None, 10) == ([], None)
        finally:
            await client.close()
