"""Idle connections between the gateway and a service are closed by the gateway first.

With uvicorn's and httpx's defaults both at 5 s, a service could close a pooled
connection just as the gateway sent a request on it; a POST cannot be retried, so the
client got a 502 ("… broke off the exchange"), seen in the authorization matrix under
load. The race sits in a window of milliseconds, so these tests pin the configuration
that closes it: every server we run keeps idle connections well beyond the time the
gateway's pools keep them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from healthflow.common.http import SERVER_KEEP_ALIVE_SECONDS, uvicorn_options
from healthflow.devkit.discovery import Component
from healthflow.devkit.supervisor import _EmbeddedServer
from healthflow.gateway.breaker import Breakers
from healthflow.gateway.proxy import UPSTREAM_KEEPALIVE_SECONDS, Proxy
from healthflow.gateway.settings import GatewaySettings


def test_services_keep_idle_connections_longer_than_the_gateways_pools() -> None:
    assert uvicorn_options()["timeout_keep_alive"] == SERVER_KEEP_ALIVE_SECONDS
    # twice over at least: a busy service's event loop may see the close late
    assert SERVER_KEEP_ALIVE_SECONDS >= 2 * UPSTREAM_KEEPALIVE_SECONDS
    config = uvicorn.Config(FastAPI(), **uvicorn_options())
    assert config.timeout_keep_alive > uvicorn.Config(FastAPI()).timeout_keep_alive


def test_every_upstream_pool_of_the_gateway_expires_idle_connections_first() -> None:
    settings = GatewaySettings()
    proxy = Proxy(settings, Breakers(threshold=5, reset_seconds=5.0))
    try:
        for pool in [proxy.client, *proxy.pools.values()]:
            expiry = pool._transport._pool._keepalive_expiry  # type: ignore[attr-defined]
            assert expiry == UPSTREAM_KEEPALIVE_SECONDS < SERVER_KEEP_ALIVE_SECONDS
    finally:
        asyncio.run(proxy.close())


def test_the_runners_in_process_servers_use_the_same_keep_alive(tmp_path: Path) -> None:
    component = Component(name="auth", port=0)
    server = _EmbeddedServer(FastAPI(), component, grace=5.0, log_file=tmp_path / "x.log")
    assert server.server.config.timeout_keep_alive == SERVER_KEEP_ALIVE_SECONDS
