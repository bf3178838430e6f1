"""Is it there yet: the broker, MongoDB, and a component's ``/readyz``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from healthflow.devkit.config import Config, redact
from healthflow.devkit.console import Console
from healthflow.devkit.discovery import HOST, Component
from healthflow.devkit.embedded import ensure_rabbitmq, port_open

READY_POLL_INTERVAL = 0.25  # seconds between two /readyz probes


async def amqp_answers(url: str, within: float = 5.0) -> bool:
    """True when a broker accepts a connection (credentials, vhost) at ``url`` in ``within`` s."""
    import aio_pika

    try:
        connection = await asyncio.wait_for(aio_pika.connect(url, timeout=within), within)
    except Exception:
        return False
    with contextlib.suppress(Exception):
        await connection.close()
    return True


async def find_broker(config: Config, console: Console) -> bool:
    """Whether RabbitMQ answers at ``AMQP_URL``; starts the local one when it is installed."""
    parts = urlsplit(config.amqp_url)
    host, port = parts.hostname or HOST, parts.port or 5672
    local = host in ("127.0.0.1", "localhost", "::1")
    if local and not port_open(host, port):
        import shutil

        if shutil.which("rabbitmq-server") is None:
            return False
        console.status("rabbitmq", "starting", "the installed rabbitmq-server", "yellow")
        try:
            await asyncio.to_thread(ensure_rabbitmq, host, port)
        except RuntimeError as exc:
            console.status("rabbitmq", "failed", str(exc), "red")
            return False
    return await amqp_answers(config.amqp_url)


def ping_mongo(url: str, within: float = 10.0) -> None:
    """Make sure a MongoDB server answers at ``url`` within ``within`` seconds.

    Raises:
        RuntimeError: naming ``MONGODB_URL`` and what the driver saw.
    """
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(
        url, serverSelectionTimeoutMS=int(within * 1000))
    try:
        client.admin.command("ping")
    except Exception as exc:
        raise RuntimeError(f"MongoDB at MONGODB_URL={redact(url)} does not answer "
                           f"({type(exc).__name__}); start it or unset MONGODB_URL "
                           "to use the embedded SecantusDB") from None
    finally:
        client.close()


@dataclass
class Readiness:
    ready: bool
    status: int | None  # HTTP status of the last probe; None when nothing answered
    body: Any = None
    seconds: float = 0.0  # from the start of waiting until ready (or the timeout)


async def wait_ready(component: Component, deadline: float,
                     alive: Callable[[], bool] = lambda: True,
                     failed: Callable[[], str | None] = lambda: None) -> Readiness:
    """Probe ``/readyz`` (``/livez`` when there is none) until 200 or ``deadline`` (monotonic).

    ``alive`` false skips a probe (a child waiting to be restarted); ``failed``
    returning a reason ends the wait at once (a part that will not come back).
    """
    started = time.monotonic()
    last = Readiness(False, None)
    path = "/readyz"
    async with httpx.AsyncClient(base_url=component.url, timeout=5.0) as client:
        while True:
            reason = failed()
            if reason is not None:
                return Readiness(False, None, reason, time.monotonic() - started)
            if alive():
                try:
                    response = await client.get(path)
                    body: Any
                    try:
                        body = response.json()
                    except ValueError:
                        body = response.text[:200]
                    last = Readiness(response.status_code == 200, response.status_code, body)
                    if response.status_code == 404 and path == "/readyz":
                        path = "/livez"
                        continue
                except httpx.HTTPError as exc:
                    last = Readiness(False, None, type(exc).__name__)
            if last.ready or time.monotonic() >= deadline:
                last.seconds = time.monotonic() - started
                return last
            await asyncio.sleep(READY_POLL_INTERVAL)


def summarize(body: Any) -> str:
    """One short line from a ``/readyz`` body: the failing checks, or ``ok``."""
    if isinstance(body, dict) and isinstance(body.get("checks"), dict):
        bad = [f"{k}={v}" for k, v in body["checks"].items()
               if v not in ("ok", "attached", True) and not isinstance(v, dict)]
        return ", ".join(bad) if bad else "all checks ok"
    return str(body)[:120] if body is not None else "no answer"


def print_readiness(console: Console, components: Sequence[Component],
                    report: Mapping[str, Readiness],
                    skipped: Sequence[tuple[str, str]]) -> None:
    """The readiness table of ``--check``: each component's state, ``/readyz`` status and
    answer (``report``; a component missing from it was never probed), then the skipped
    ones with the reason."""
    c = console
    c.line()
    c.line(c.paint("readiness", "bold"))
    for component in components:
        result = report.get(component.name, Readiness(False, None, "not probed"))
        state, color = ("ready", "green") if result.ready else ("NOT READY", "red")
        c.line(f"  {component.name:<12} {c.paint(f'{state:<10}', color)} "
               f"{result.status or '-':>3}  {summarize(result.body)}")
    for name, reason in skipped:
        skipped_label = c.paint(f"{'skipped':<10}", "dim")
        c.line(f"  {name:<12} {skipped_label} {'-':>3}  {reason}")
