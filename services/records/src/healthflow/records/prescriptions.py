"""The patient's prescriptions, read from the prescription service's public HTTP API.

Prescriptions (FHIR R4 ``MedicationRequest``) are the prescription service's data;
the records service keeps no copy. The FHIR export reads them with
``GET {prescription_url}/api/v1/prescriptions?patient_id=…&cursor=…&limit=…``
(a ``Page`` of ``PrescriptionOut``), sending the CALLER's bearer token, so the
prescription service applies its own permission and ownership rules (and publishes
its own ``prescription.accessed``): a caller never sees here what they could not
see there. See docs/decisions.md, "A synchronous read of another service's API".

The client is a :class:`~healthflow.common.peers.PeerClient` to ``prescription_url``
(no proxy, no redirect, ``prescription_timeout`` seconds for the whole exchange).

Every failure — unreachable, slower than ``prescription_timeout`` seconds, any
non-200 answer (401/403 included), a body that is not a page — is one
:class:`PrescriptionsUnavailable`; the export then says so in an
``OperationOutcome`` instead of failing.
"""

from __future__ import annotations

from typing import Any

from healthflow.common.peers import PeerClient, PeerTimedOut, PeerUnreachable

PATH = "/api/v1/prescriptions"

Json = dict[str, Any]


class PrescriptionsUnavailable(Exception):
    """The prescription service did not hand over the page; ``str()`` says why, without
    PHI (a status code or the kind of transport failure)."""


class PrescriptionClient(PeerClient):
    """One pooled HTTP client to the prescription service
    (:class:`~healthflow.common.peers.PeerClient`: started and closed with the service's
    runtime; ``timeout`` seconds for the whole exchange)."""

    async def page(self, token: str, patient_id: str, cursor: str | None, limit: int
                   ) -> tuple[list[Json], str | None]:
        """Up to ``limit`` of the patient's prescriptions (``PrescriptionOut`` JSON, oldest
        first) after ``cursor``, and the cursor of the rest (``None``: no more).

        Raises:
            PrescriptionsUnavailable: see the module doc.
        """
        params = {"patient_id": patient_id, "limit": str(limit),
                  **({"cursor": cursor} if cursor else {})}
        try:
            response = await self.call("GET", PATH, token, params=params)
        except PeerTimedOut:
            raise PrescriptionsUnavailable("the prescription service timed out") from None
        except PeerUnreachable as exc:
            raise PrescriptionsUnavailable(
                f"the prescription service cannot be reached ({exc})") from None
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
