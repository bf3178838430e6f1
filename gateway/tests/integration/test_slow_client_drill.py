"""Drill: a few hundred trickling connections and streams from one address while ordinary
clients keep being answered (issue 17). Bounded: about ten seconds.

The attacker holds 200 valid accounts (so the per-user caps alone would not stop
it) and sends each request body one byte every half second; it also opens 40
event streams. The ordinary clients' p99 latency before and during is printed
(`-s` shows it); the assertions are about answers, never about timings."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import httpx

from healthflow.devkit.testing import TokenFactory

ATTACKER = "198.51.100.66"
TRICKLING = 200
STREAMS = 40
BODY_TIMEOUT = 2.0


async def _status(reader: asyncio.StreamReader, wait: float) -> int | None:
    """The status code of the answer's first line, or None if none came within ``wait`` s."""
    with contextlib.suppress(TimeoutError):
        line = await asyncio.wait_for(reader.readline(), timeout=wait)
        return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else -1
    return None


async def trickle(port: int, token: str) -> int:
    """POST a 1 KiB body one byte every 0.5 s until the gateway answers; its status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"POST /api/v1/patients/echo HTTP/1.1\r\nHost: drill\r\n"
                  f"Authorization: Bearer {token}\r\nX-Forwarded-For: {ATTACKER}\r\n"
                  "Content-Length: 1024\r\n\r\n").encode())
    try:
        for _ in range(int(4 * BODY_TIMEOUT / 0.5)):
            writer.write(b"x")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            status = await _status(reader, 0.5)
            if status is not None:
                return status
        return 0  # never answered
    finally:
        writer.close()


async def open_stream(port: int, token: str, held: list[asyncio.StreamWriter]) -> int:
    """Open an event stream from the attacker's address; its status (kept open if 200)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"GET /api/v1/patients/sse HTTP/1.1\r\nHost: drill\r\n"
                  f"Authorization: Bearer {token}\r\nX-Forwarded-For: {ATTACKER}\r\n"
                  "Accept: text/event-stream\r\n\r\n").encode())
    status = await _status(reader, 5.0) or 0
    held.append(writer)
    return status


async def ordinary(base: str, headers: dict[str, str], seconds: float) -> list[tuple[int, float]]:
    """One ordinary client's (status, latency s) for ``seconds`` of requests."""
    answers = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
        await client.get("/api/v1/patients/echo")  # warm: connection, token cache
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await client.get("/api/v1/patients/echo")
            answers.append((response.status_code, time.perf_counter() - started))
            await asyncio.sleep(0.02)
    return answers


def p99(answers: list[tuple[int, float]]) -> float:
    latencies = sorted(latency for _, latency in answers)
    return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000


async def drill(base: str, port: int, tokens: TokenFactory) -> dict[str, object]:
    clients = [tokens.headers(f"ordinary-{i}") | {"X-Forwarded-For": f"192.0.2.{i + 10}"}
               for i in range(3)]
    before = [a for batch in await asyncio.gather(*(ordinary(base, h, 2.0) for h in clients))
              for a in batch]
    attacker = [tokens.mint(f"attacker-{i}", ["patient"]) for i in range(TRICKLING)]
    held: list[asyncio.StreamWriter] = []
    attack = asyncio.gather(*(trickle(port, t) for t in attacker),
                            *(open_stream(port, t, held) for t in attacker[:STREAMS]))
    await asyncio.sleep(0.3)
    during = [a for batch in await asyncio.gather(*(ordinary(base, h, 3.0) for h in clients))
              for a in batch]
    statuses = await attack
    for writer in held:
        writer.close()
    return {"before": before, "during": during,
            "trickled": Counter(statuses[:TRICKLING]), "streams": Counter(statuses[TRICKLING:])}


def test_ordinary_clients_are_answered_while_one_address_trickles(start_gateway, platform):
    gateway = start_gateway(trusted_proxy_hops=1, body_timeout=BODY_TIMEOUT)
    platform.patient_state.sse_release.clear()
    try:
        result = asyncio.run(drill(gateway.url, gateway.port, platform.tokens))
    finally:
        platform.patient_state.sse_release.set()
    before, during = result["before"], result["during"]
    assert isinstance(before, list) and isinstance(during, list)
    print(f"\nordinary clients: p99 {p99(before):.1f} ms before ({len(before)} requests), "
          f"{p99(during):.1f} ms during ({len(during)} requests)")
    print(f"attacker: trickling bodies {dict(result['trickled'])}, "
          f"event streams {dict(result['streams'])}")
    assert {status for status, _ in before + during} == {200}
    trickled, streams = result["trickled"], result["streams"]
    assert isinstance(trickled, Counter) and isinstance(streams, Counter)
    assert set(trickled) <= {408, 429} and trickled[408] and trickled[429], trickled
    assert set(streams) <= {200, 429} and streams[429], streams
    assert streams[200] <= 16  # address_max_streams
