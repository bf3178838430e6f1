"""Real servers for the gateway's tests: small upstream FastAPI apps and gateways, each
served by uvicorn on a free loopback port (in a thread of this process, or as a
child process where the test needs a process of its own), so the proxy talks real
HTTP and WebSocket.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import create_model

from healthflow.common.topology import SERVICES
from healthflow.devkit.embedded import free_port
from healthflow.devkit.testing import TokenFactory
from healthflow.gateway.app import create_app
from healthflow.gateway.settings import GatewaySettings

REPO = Path(__file__).resolve().parents[3]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0,
               interval: float = 0.02) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


class ServerThread:
    """``app`` served by uvicorn on 127.0.0.1:``port`` in a daemon thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_config=None,
                                log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=1, proxy_headers=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        server = self.server
        wait_until(lambda: server.started or not self.thread.is_alive(), timeout=15)  # type: ignore[union-attr]
        if not server.started:
            raise RuntimeError(f"uvicorn did not start on port {self.port}")
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)
            self.server = None


# --- the fake upstream ---------------------------------------------------------------


@dataclass
class UpstreamState:
    """What an upstream saw, shared with the test thread."""

    upload_bytes: int = 0
    upload_done: bool = False
    sse_release: threading.Event = field(default_factory=threading.Event)
    busy_calls: int = 0
    busy_failures: int = 2


def make_upstream(name: str, prefixes: list[str], *, jwks: dict[str, Any] | None = None,
                  state: UpstreamState | None = None) -> tuple[FastAPI, UpstreamState]:
    """An upstream answering under each of ``prefixes``:

    ``/echo`` (the request as seen: method, path, query, headers, body size),
    ``/slow?seconds=``, ``/busy`` (503 for the first ``busy_failures`` calls),
    ``/sse`` (one event, then a second after the test releases it),
    ``/upload`` (streams the body, counting bytes as they arrive), ``/ws``
    (WebSocket echo that reports the handshake); plus ``/livez``, ``/readyz`` and,
    when ``jwks`` is given, ``/.well-known/jwks.json``.
    """
    state = state or UpstreamState()
    app = FastAPI(title=f"fake {name}")
    # The same schema name in every upstream with a different shape: a merge collision.
    Thing = create_model("Thing", kind=(str, name), **{f"{name}_only": (int, 0)})

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready", "service": name}

    if jwks is not None:
        @app.get("/.well-known/jwks.json")
        async def jwks_route() -> dict[str, Any]:
            return jwks

    @app.get("/internal/secret")
    async def internal() -> dict[str, str]:
        return {"internal": "never routed"}

    for prefix in prefixes:
        tag = prefix.rsplit("/", 1)[-1]

        async def echo(request: Request) -> JSONResponse:
            body = await request.body()
            headers: dict[str, list[str]] = {}
            for key, value in request.headers.items():
                headers.setdefault(key.lower(), []).append(value)
            return JSONResponse({
                "service": name, "method": request.method, "path": request.url.path,
                "query": request.url.query, "headers": headers, "body_size": len(body),
            }, headers={"x-request-id": "upstream-own-id", "x-upstream": name})

        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            app.add_api_route(prefix + "/echo", echo, methods=[method], tags=[tag],
                              operation_id=f"{tag}_echo_{method.lower()}")

        @app.get(prefix + "/things", tags=[tag], operation_id=f"{tag}_things",
                 response_model=list[Thing])  # type: ignore[valid-type]
        async def things() -> Any:
            return [Thing()]

        @app.get(prefix + "/slow", tags=[tag], operation_id=f"{tag}_slow")
        async def slow(seconds: float = 1.0) -> dict[str, float]:
            await asyncio.sleep(seconds)
            return {"slept": seconds}

        @app.api_route(prefix + "/busy", methods=["GET", "POST"], include_in_schema=False)
        async def busy() -> JSONResponse:
            state.busy_calls += 1
            if state.busy_calls <= state.busy_failures:
                return JSONResponse({"detail": "busy"}, status_code=503)
            return JSONResponse({"calls": state.busy_calls})

        @app.get(prefix + "/sse", include_in_schema=False)
        async def sse() -> StreamingResponse:
            async def events() -> Any:
                yield b"event: first\ndata: one\n\n"
                await asyncio.to_thread(state.sse_release.wait, 10.0)
                yield b"event: second\ndata: two\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        @app.post(prefix + "/upload", include_in_schema=False)
        async def upload(request: Request) -> dict[str, Any]:
            digest = hashlib.sha256()
            state.upload_bytes = 0
            state.upload_done = False
            async for chunk in request.stream():
                digest.update(chunk)
                state.upload_bytes += len(chunk)
            state.upload_done = True
            return {"size": state.upload_bytes, "sha256": digest.hexdigest()}

        @app.websocket(prefix + "/ws")
        async def ws(websocket: WebSocket) -> None:
            offered = websocket.scope.get("subprotocols", [])
            await websocket.accept(subprotocol=offered[0] if offered else None)
            await websocket.send_json({
                "subprotocol": offered[0] if offered else None,
                "authorization": websocket.headers.get("authorization"),
                "x-user-id": websocket.headers.get("x-user-id"),
                "query": websocket.url.query,
            })
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") == "close-please":
                    await websocket.close(code=4001, reason="asked to")
                    return
                if message.get("text") is not None:
                    await websocket.send_text("echo:" + message["text"])
                elif message.get("bytes") is not None:
                    await websocket.send_bytes(message["bytes"][::-1])

    return app, state


@dataclass
class Platform:
    """The fake upstreams of one test session and the settings that reach them."""

    auth: ServerThread
    patient: ServerThread
    patient_state: UpstreamState
    notification_port: int
    notification_state: UpstreamState
    dead_url: str
    tokens: TokenFactory

    def upstreams(self) -> dict[str, str]:
        """Every installed service (a new one included) has an upstream; those the tests
        do not talk to are the dead one."""
        live = {
            "auth": self.auth.url,
            "audit": self.patient.url,
            "patient": self.patient.url,
            "appointment": self.patient.url,
            "notification": f"http://127.0.0.1:{self.notification_port}",
        }
        return {name: live.get(name, self.dead_url) for name in SERVICES}

    def settings(self, **overrides: Any) -> GatewaySettings:
        values: dict[str, Any] = {
            "upstreams": self.upstreams(),
            "cors_origins": ["https://app.healthflow.example"],
            "breaker_reset_seconds": 1.0,
            "breaker_failure_threshold": 3,
            "retry_initial_delay": 0.01,
            "retry_max_delay": 0.05,
            "openapi_cache_seconds": 0,
            "health_timeout": 1.0,
            "redis_url": None,
        }
        values.update(overrides)
        return GatewaySettings(**values)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.pop("REDIS_URL", None)
        for name, url in self.upstreams().items():
            env[f"GATEWAY_UPSTREAM_{name.upper()}"] = url
        env.update(extra)
        return env


@pytest.fixture(scope="session")
def platform(tokens: TokenFactory) -> Iterator[Platform]:
    auth_app, _ = make_upstream(
        "auth", ["/api/v1/auth", "/api/v1/auth/token", "/api/v1/users"], jwks=tokens.jwks)
    patient_app, patient_state = make_upstream(
        "patient", ["/api/v1/patients", "/api/v1/audit", "/api/v1/appointments"])
    auth = ServerThread(auth_app).start()
    patient = ServerThread(patient_app).start()
    dead_port = free_port()
    platform = Platform(auth=auth, patient=patient, patient_state=patient_state,
                        notification_port=free_port(), notification_state=UpstreamState(),
                        dead_url=f"http://127.0.0.1:{dead_port}", tokens=tokens)
    try:
        yield platform
    finally:
        patient.stop()
        auth.stop()


@pytest.fixture
def start_gateway(platform: Platform) -> Iterator[Callable[..., ServerThread]]:
    """Start an in-thread gateway with ``platform.settings(**overrides)``."""
    started: list[ServerThread] = []

    def start(**overrides: Any) -> ServerThread:
        server = ServerThread(create_app(platform.settings(**overrides))).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def gateway(start_gateway: Callable[..., ServerThread]) -> ServerThread:
    return start_gateway()


class GatewayProcess:
    """``python -m healthflow.gateway`` as a child process (its own memory, own GIL)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        env = dict(env) | {"GATEWAY_PORT": str(self.port), "GATEWAY_HOST": "127.0.0.1",
                           "GATEWAY_LOG_LEVEL": "WARNING"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "healthflow.gateway"], env=env, cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> GatewayProcess:
        def answers() -> bool:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"gateway exited with {self.process.returncode}: {err}")
            try:
                return httpx.get(self.url + "/livez", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, timeout=timeout, interval=0.05)
        return self

    def rss_bytes(self) -> int:
        """Resident set size of the process (Linux /proc), in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stderr:
            self.process.stderr.close()


@pytest.fixture
def gateway_processes() -> Iterator[Callable[[dict[str, str]], GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(env: dict[str, str]) -> GatewayProcess:
        process = GatewayProcess(env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
