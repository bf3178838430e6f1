"""What the emergency drill (``test_emergency_drill.py``) runs against: the emergency
service as real ``python -m healthflow.emergency`` processes, a stand-in for the auth
service's key and revocation endpoints they read, and dispatchers raising through the
HTTP API with an ``Idempotency-Key`` per raise, retrying on the other process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from healthflow.common.revocation import SNAPSHOT_PATH
from healthflow.devkit.embedded import free_port, stop_child
from healthflow.devkit.testing import TokenFactory, eventually

CALM = {"conscious": True, "breathing_normally": True}  # P4: one unit each (a P1 takes two)


@contextmanager
def auth_stand_in(tokens: TokenFactory) -> Iterator[str]:
    """Serve ``tokens``' JWKS and an empty revocation snapshot on loopback; yields the
    JWKS URL (the snapshot is at its origin + ``/internal/revocations``)."""
    bodies = {"/.well-known/jwks.json": json.dumps(tokens.jwks).encode(),
              SNAPSHOT_PATH: b'{"sessions": [], "users": [], "keys": []}'}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = bodies.get(self.path.split("?")[0])
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class EmergencyProcess:
    """One ``python -m healthflow.emergency`` child on a port of its own."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown, open requests and transactions cut, deliveries unacked."""
        self.process.send_signal(signal.SIGKILL)


def emergency_env(mongodb_url: str, database: str, amqp_url: str, jwks_url: str,
                  port: int) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("EMERGENCY_")},
            "EMERGENCY_PORT": str(port), "EMERGENCY_MONGODB_URL": mongodb_url,
            "EMERGENCY_MONGODB_DATABASE": database, "EMERGENCY_TRANSPORT": "rabbitmq",
            "EMERGENCY_AMQP_URL": amqp_url, "EMERGENCY_JWKS_URL": jwks_url,
            "EMERGENCY_OUTBOX_POLL_INTERVAL": "0.2", "EMERGENCY_OUTBOX_LEASE": "2",
            "EMERGENCY_LOG_LEVEL": "WARNING"}


def spawn(env: dict[str, str], workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "healthflow.emergency"], env=env,
                                cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


async def start_emergency(name: str, env: dict[str, str], workdir: Path) -> EmergencyProcess:
    """Start one process (``env`` from :func:`emergency_env`) and wait for ``/readyz``."""
    log = workdir / f"{name}.log"
    process = await asyncio.to_thread(spawn, env, workdir, log)
    child = EmergencyProcess(name, int(env["EMERGENCY_PORT"]), process, log)

    async def ready() -> bool:
        assert process.poll() is None, f"{name} exited:\n{log.read_text()[-3000:]}"
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(f"{child.url}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await eventually(ready, within=90, interval=0.2, message=f"{name} never got ready")
    except BaseException:
        stop_child(process, 5.0)
        raise
    return child


@dataclass
class Raise:
    """One dispatcher's raise as the client saw it (times wall clock, aware UTC)."""

    key: str
    sent_at: datetime
    attempts: list[tuple[str, str]] = field(default_factory=list)  # (process, outcome)
    emergency_id: str | None = None
    answered_s: float | None = None  # first send → the 201, seconds
    retried_at: datetime | None = None  # when it was first sent again


class Dispatchers:
    """Dispatchers raising calls at ``processes`` (each raise starts at one, in turn, and
    is retried with its ``Idempotency-Key`` on the next after a cut connection or a 5xx).

    ``kill_after``: SIGKILL ``processes[-1]`` once it has answered that many raises.
    A raise is retried for up to ``patience_s`` seconds: one the killed process was
    writing stays blocked (a write conflict on its id, answered 503 after the request's
    transaction budget) until the database aborts the dead client's transaction —
    ``transactionLifetimeLimitSeconds``, 60 s in mongod and SecantusDB."""

    def __init__(self, processes: list[EmergencyProcess], tokens: TokenFactory,
                 kill_after: int | None = None, patience_s: float = 150.0) -> None:
        self.processes = processes
        self.headers = [tokens.headers(f"disp-{i}", ("dispatcher",), ttl=900)
                        for i in range(5)]
        self.kill_after = kill_after
        self.patience_s = patience_s
        self.answered: dict[str, int] = dict.fromkeys((p.name for p in processes), 0)
        self.killed_at: float | None = None
        self.clients: list[httpx.AsyncClient] = []

    async def __aenter__(self) -> Dispatchers:
        limits = httpx.Limits(max_connections=1_000, max_keepalive_connections=1_000)
        self.clients = [httpx.AsyncClient(base_url=p.url, timeout=60, limits=limits)
                        for p in self.processes]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients:
            await client.aclose()

    async def raise_one(self, i: int, position: tuple[float, float]) -> Raise:
        """Raise call ``i`` at ``position`` (lat, lon) until a 201 or out of attempts."""
        done = Raise(str(uuid.uuid4()), datetime.now(UTC))
        started = time.perf_counter()
        body = {"position": {"latitude": position[0], "longitude": position[1],
                             "accuracy_m": 15.0},
                "what_happened": f"drill call {i}", "triage": CALM}
        attempt = 0
        while time.perf_counter() - started < self.patience_s:
            at = (i + attempt) % len(self.processes)
            if attempt == 1:
                done.retried_at = datetime.now(UTC)
            outcome = await self._post(at, body, done.key, self.headers[i % 5])
            done.attempts.append((self.processes[at].name, outcome))
            if outcome.startswith("201 "):
                done.emergency_id = outcome.split()[1]
                done.answered_s = time.perf_counter() - started
                self._count(at)
                return done
            if not (outcome.startswith("5") or outcome.startswith("cut")):
                return done  # a 4xx: a bug in the drill or the service; reported
            attempt += 1
            await asyncio.sleep(min(0.05 * attempt, 1.0))
        return done

    async def _post(self, at: int, body: dict[str, Any], key: str,
                    headers: dict[str, str]) -> str:
        try:
            response = await self.clients[at].post(
                "/api/v1/emergencies", json=body,
                headers={**headers, "Idempotency-Key": key})
        except httpx.TransportError as exc:
            return f"cut {type(exc).__name__}"
        if response.status_code == 201:
            return f"201 {response.json()['id']}"
        return f"{response.status_code} {response.text[:200]}"

    def _count(self, at: int) -> None:
        victim = self.processes[-1]
        self.answered[self.processes[at].name] += 1
        if (self.kill_after is not None and self.killed_at is None
                and self.answered[victim.name] >= self.kill_after):
            victim.kill()
            self.killed_at = time.perf_counter()
