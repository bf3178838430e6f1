"""Calls to another HealthFlow service's public HTTP API, made with the CALLER's token.

Where one service answers a request with another's data or action (records reads the
patient's MedicationRequests from prescription; emergency forwards a dispatcher's
reassignment to paramedic), it calls that service's public route with the caller's
bearer token, so the other service applies its own permission and ownership rules
(docs/decisions.md, "A synchronous read of another service's API").

:class:`PeerClient` is one pooled ``httpx`` client to such a service, started and
closed with the calling service's runtime. It goes straight to the service's internal
address: no proxy from the environment (``trust_env=False``: the caller's token must
not pass through one) and no redirect followed. ``timeout`` (seconds) bounds the whole
exchange (``asyncio.timeout``), not each read, so a body trickled byte by byte cannot
hold the caller's request open. Transport failures are :class:`PeerTimedOut` (the
request may have been acted on) and :class:`PeerUnreachable` (it was not answered);
what an answer means (its status and body) is the caller's business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httpx


class PeerUnreachable(Exception):
    """The service could not be reached; ``str()`` names the kind of transport failure
    (an ``httpx`` exception class name), never the request's data."""


class PeerTimedOut(Exception):
    """The service did not answer within the client's ``timeout``."""


class PeerClient:
    """One pooled HTTP client to another service (see the module doc). ``base_url``: its
    internal address (``http://host:port``); ``timeout``: seconds for the whole exchange
    (connect, write, read, pool, together)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(base_url=self.base_url,
                                         timeout=httpx.Timeout(self.timeout),
                                         trust_env=False, follow_redirects=False)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def call(self, method: str, path: str, token: str, *,
                   params: Mapping[str, str] | None = None, content: bytes | None = None,
                   content_type: str | None = None) -> httpx.Response:
        """The service's answer to ``method path`` sent with the caller's ``token``.

        Raises:
            PeerUnreachable: not started, or a transport failure before an answer.
            PeerTimedOut: no whole answer within ``timeout`` seconds.
        """
        if self._client is None:
            raise PeerUnreachable("the client is not started")
        headers = {"Authorization": f"Bearer {token}"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            async with asyncio.timeout(self.timeout):
                return await self._client.request(method, path, params=params,
                                                  content=content, headers=headers)
        except (httpx.TimeoutException, TimeoutError):
            raise PeerTimedOut(f"no answer within {self.timeout} s") from None
        except httpx.HTTPError as exc:
            raise PeerUnreachable(type(exc).__name__) from None
