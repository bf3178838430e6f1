"""Health of the platform as the gateway sees it: each upstream's /livez and /readyz.

Used by the gateway's ``/readyz`` (ready when every required upstream's
``/readyz`` answers 200) and by the admin status page. Each probe has its own
timeout (``wait`` seconds, from ``health_timeout``) and all run concurrently, so a hung
service costs one timeout, not one per service.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

import httpx

from healthflow.gateway.breaker import Breakers


async def probe(client: httpx.AsyncClient, base_url: str, path: str,
                wait: float) -> dict[str, Any]:
    """GET ``base_url + path``: ``{"status": "ok"|"failing"|"unreachable", "http_status",
    "latency_ms", "body"?}``."""
    started = time.perf_counter()
    try:
        response = await client.get(base_url + path, timeout=wait)
    except httpx.HTTPError as exc:
        return {"status": "unreachable", "error": type(exc).__name__,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    result: dict[str, Any] = {
        "status": "ok" if response.status_code == 200 else "failing",
        "http_status": response.status_code,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    with contextlib.suppress(ValueError):
        result["body"] = response.json()
    return result


async def readiness(client: httpx.AsyncClient, upstreams: Mapping[str, str],
                    wait: float) -> dict[str, dict[str, Any]]:
    """Each upstream's ``/readyz`` result, by service name."""
    names = list(upstreams)
    results = await asyncio.gather(
        *(probe(client, upstreams[n], "/readyz", wait) for n in names)
    )
    return dict(zip(names, results, strict=True))


async def platform_status(client: httpx.AsyncClient, upstreams: Mapping[str, str],
                          wait: float, breakers: Breakers) -> dict[str, Any]:
    """Every service's liveness, readiness (with its checks) and circuit state."""
    names = list(upstreams)
    live, ready = await asyncio.gather(
        asyncio.gather(*(probe(client, upstreams[n], "/livez", wait) for n in names)),
        asyncio.gather(*(probe(client, upstreams[n], "/readyz", wait) for n in names)),
    )
    services = {}
    for name, lz, rz in zip(names, live, ready, strict=True):
        services[name] = {
            "url": upstreams[name],
            "live": lz["status"] == "ok",
            "ready": rz["status"] == "ok",
            "circuit": await breakers.state(name),
            "livez": lz,
            "readyz": rz,
        }
    healthy = all(s["ready"] for s in services.values())
    return {"status": "ok" if healthy else "degraded", "services": services}
