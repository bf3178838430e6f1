"""The patient's prescriptions, read from the prescription service's public HTTP API.

Prescriptions (FHIR R4 ``MedicationRequest``) are the prescription service's data;
the records service keeps no copy. The FHIR export reads them with
``GET {prescription_url}/api/v1/prescriptions?patient_id=…&cursor=…&limit=…``
(a ``Page`` of ``PrescriptionOut``), sending the CALLER's bearer token, so the
prescription service applies its own permission and ownership rules (and publishes
its own ``prescription.accessed``): a caller never sees here what they could not
see there. See docs/decisions.md, "A synchronous read of another service's API".

The client goes straight to ``prescription_url``: no proxy from the environment
(``trust_env=False``: the caller's token must not pass through one) and no redirect
followed (a redirect is a non-200 answer). ``prescription_timeout`` bounds the whole
exchange (``asyncio.timeout``), not just each read: a body trickled byte by byte
cannot hold an export open.

Every failure — unreachable, slower than ``prescription_timeout`` seconds, any
non-200 answer (401/403 included), a body that is not a page — is one
:class:`PrescriptionsUnavailable`; the export then says so in an
``OperationOutcome`` instead of failing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

PATH = "/api/v1/prescriptions"

Json = dict[str, Any]


class PrescriptionsUnavailable(Exception):
    """The prescription service did not hand over the page; ``str()`` says why, without
    PHI (a status code or the kind of transport failure)."""


class PrescriptionClient:
    """One pooled HTTP client to the prescription service (started and closed with the
    service's runtime). ``base_url``: its internal address (``http://host:port``);
    ``timeout``: seconds for the whole exchange (connect, write, read, pool, together)."""

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

    async def page(self, token: str, patient_id: str, cursor: str | None, limit: int
                   ) -> tuple[list[Json], str | None]:
        """Up to ``limit`` of the patient's prescriptions (``PrescriptionOut`` JSON, oldest
        first) after ``cursor``, and the cursor of the rest (``None``: no more).

        Raises:
            PrescriptionsUnavailable: see the module doc.
        """
        if self._client is None:
            raise PrescriptionsUnavailable("the prescription client is not started")
        params = {"patient_id": patient_id, "limit": str(limit),
                  **({"cursor": cursor} if cursor else {})}
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.get(
                    PATH, params=params, headers={"Authorization": f"Bearer {token}"})
        except (httpx.TimeoutException, TimeoutError):
            raise PrescriptionsUnavailable("the prescription service timed out") from None
        except httpx.HTTPError as exc:
            raise PrescriptionsUnavailable(
                f"the prescription service cannot be reached ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise PrescriptionsUnavailable(
                f"the prescription service answered {response.status_code}")
        try:
            body = response.json()
            items, next_cursor = body["items"], body.get("next_cursor")
        except (ValueError, KeyError, TypeError):
            raise PrescriptionsUnavailable("the prescription service answered no page") from None
        if not isinstance(items, list) or not (next_cursor is None or isinstance(next_cursor, str)):
            raise PrescriptionsUnavailable("the prescription service answered no page")
        return items, next_cursor
