"""Forwarding WebSocket sessions to upstreams (the HTTP side is :mod:`healthflow.gateway.proxy`).

The upstream handshake happens first, through the upstream's circuit breaker;
only when it succeeds is the client's handshake accepted, with the upstream's
chosen subprotocol. Then frames are relayed both ways, text as text and binary
as binary, until either side closes; the upstream's close code and reason pass
through to the client. An upstream silent longer than the route's stream
timeout is closed with 1001 ("going away") on both sides.

Headers are those of :func:`healthflow.gateway.proxy.forward_headers` minus
hop-by-hop fields and the handshake's own (:data:`WS_HEADERS_DROP`), which the
WebSocket client library sets itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from fastapi import WebSocket

from healthflow.common.errors import Problem, ServiceUnavailable
from healthflow.gateway.breaker import Breakers, CircuitOpen
from healthflow.gateway.proxy import HOP_BY_HOP

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

log = logging.getLogger(__name__)

WS_HEADERS_DROP = HOP_BY_HOP | {
    "host", "origin", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
    "sec-websocket-protocol", "sec-websocket-accept", "content-length",
}


class UpstreamRefused(Problem):
    """The upstream refused the WebSocket handshake with a 4xx ``status``."""

    status, title, slug = 400, "WebSocket Refused", "websocket-refused"

    def __init__(self, status: int) -> None:
        super().__init__(f"the service refused the WebSocket handshake with {status}",
                         upstream_status=status)
        self.upstream_status = status


class _Unreachable(Exception):
    """The upstream refused the connection or failed the handshake (5xx, protocol error)."""


async def proxy_websocket(
    websocket: WebSocket,
    *,
    url: str,
    headers: list[tuple[str, str]],
    open_timeout: float,
    idle_timeout: float,
    breakers: Breakers,
    upstream: str,
    refused: Callable[[], Coroutine[Any, Any, str]] | None = None,
) -> None:
    """Relay one WebSocket session to ``url`` (``ws://``), both directions, until either
    side closes; the upstream's chosen subprotocol and close code pass through.

    ``refused``, when given, returns once the caller's token no longer stands (expired or
    revoked, with the reason): both sides are then closed with 1008 (policy violation,
    RFC 6455 § 7.4.1) and the reason.

    Raises:
        ServiceUnavailable: the upstream cannot be reached or its circuit is open
            (raised before the client's handshake is accepted).
        UpstreamRefused: the upstream answered the handshake with a 4xx status.
    """
    from websockets.exceptions import ConnectionClosed

    upstream_ws = await _connect(
        websocket, url=url, headers=headers, open_timeout=open_timeout,
        breakers=breakers, upstream=upstream,
    )
    await websocket.accept(subprotocol=upstream_ws.subprotocol)
    tasks = [asyncio.create_task(_client_to_upstream(websocket, upstream_ws)),
             asyncio.create_task(_upstream_to_client(websocket, upstream_ws, idle_timeout))]
    watch: asyncio.Task[str] | None = (asyncio.create_task(refused())
                                       if refused is not None else None)
    try:
        done, pending = await asyncio.wait([*tasks, *([watch] if watch else [])],
                                           return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if watch is not None and watch in done and watch.exception() is None:
            reason = watch.result()[:120]
            with contextlib.suppress(Exception):
                await upstream_ws.close(code=1008, reason=reason)
            with contextlib.suppress(Exception):
                await websocket.close(code=1008, reason=reason)
            done.discard(watch)
        for task in done:
            error = task.exception()
            if error is not None and not isinstance(error, ConnectionClosed):
                log.warning("websocket relay ended with an error",
                            extra={"error": type(error).__name__})
    finally:
        for task in tasks:
            task.cancel()
        if watch is not None:
            watch.cancel()
        await upstream_ws.close()


async def _connect(
    websocket: WebSocket,
    *,
    url: str,
    headers: list[tuple[str, str]],
    open_timeout: float,
    breakers: Breakers,
    upstream: str,
) -> ClientConnection:
    """Open the upstream side through ``upstream``'s breaker, offering the client's
    subprotocols. A 4xx answer is the client's fault and does not count against the
    circuit; anything else that fails does.

    Raises:
        ServiceUnavailable: unreachable, a 5xx answer, or the circuit is open.
        UpstreamRefused: the upstream answered the handshake with a 4xx status.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.typing import Subprotocol

    subprotocols = [Subprotocol(p) for p in websocket.scope.get("subprotocols", [])]
    forwarded = [(k, v) for k, v in headers if k not in WS_HEADERS_DROP]
    refused: int | None = None
    try:
        async with breakers.guard(upstream):
            try:
                upstream_ws = await connect(
                    url, additional_headers=forwarded, subprotocols=subprotocols or None,
                    open_timeout=open_timeout, max_size=None, ping_interval=None,
                    compression=None, proxy=None, user_agent_header=None,
                )
            except InvalidStatus as exc:
                if exc.response.status_code >= 500:
                    raise _Unreachable(str(exc)) from exc
                refused = exc.response.status_code
            except (OSError, TimeoutError, WebSocketException) as exc:
                raise _Unreachable(str(exc)) from exc
    except CircuitOpen as exc:
        raise ServiceUnavailable(f"{upstream} is unavailable (circuit open)",
                                 retry_after=exc.retry_after) from None
    except _Unreachable:
        raise ServiceUnavailable(f"{upstream} cannot be reached",
                                 retry_after=max(1, round(breakers.reset_seconds))) from None
    if refused is not None:
        raise UpstreamRefused(refused)
    return upstream_ws


async def _client_to_upstream(websocket: WebSocket, upstream_ws: ClientConnection) -> None:
    """Relay the client's frames until it disconnects, then close the upstream side
    with the client's close code (1000 when it gave none)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            await upstream_ws.close(code=message.get("code", 1000) or 1000)
            return
        if message.get("text") is not None:
            await upstream_ws.send(message["text"])
        elif message.get("bytes") is not None:
            await upstream_ws.send(message["bytes"])


async def _upstream_to_client(websocket: WebSocket, upstream_ws: ClientConnection,
                              idle_timeout: float) -> None:
    """Relay the upstream's frames until it closes (its close code and reason pass on;
    1011 when it vanished without a close frame) or stays silent ``idle_timeout``
    seconds (both sides closed with 1001)."""
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            data = await asyncio.wait_for(upstream_ws.recv(), timeout=idle_timeout)
            if isinstance(data, str):
                await websocket.send_text(data)
            else:
                await websocket.send_bytes(data)
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else 1011
        reason = exc.rcvd.reason if exc.rcvd is not None else ""
        with contextlib.suppress(Exception):
            await websocket.close(code=code, reason=reason)
    except TimeoutError:
        await upstream_ws.close(code=1001)
        with contextlib.suppress(Exception):
            await websocket.close(code=1001, reason="idle")
