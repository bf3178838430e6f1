"""A dispatcher's manual (re)assignment under the emergencies contract, done by the
paramedic service.

``PUT /api/v1/emergencies/{id}/assignment`` is the contract the clients rely on (issue
14); the units, their atomic claim and the offer timers are the paramedic service's, so
the one implementation stays there (``PUT {paramedic_url}/api/v1/paramedics/assignments
/{id}``, which the dispatcher board also uses). This module forwards the request to it
with the CALLER's bearer token and the body unchanged (``{"unit_id", "reason"}``): the
paramedic service checks the permission itself, validates the body, claims the unit
and publishes, so no rule is duplicated and no service-to-service credential exists.
See docs/decisions.md, "The emergencies contract's reassignment, forwarded".

Its answer — the ``TaskOut`` JSON on 200, or its problem+json (404 ``assignment-not-found``,
``unit-not-found``; 409 ``unit-not-assignable``, ``cannot-reassign``; 422 …) — is
handed back unchanged: status, ``Content-Type`` and body. The client is a
:class:`~healthflow.common.peers.PeerClient` to ``paramedic_url`` (no proxy, no redirect,
``paramedic_timeout`` seconds for the whole exchange).

Failures of the exchange itself: unreachable → :class:`ServiceUnavailable` (503, nothing
happened: safe to retry); slower than the timeout → :class:`GatewayTimeout` (504: the
request was sent, its outcome is unknown — read the emergency before trying again).
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response

from healthflow.common.errors import PROBLEM_JSON, GatewayTimeout, ServiceUnavailable
from healthflow.common.peers import PeerClient, PeerTimedOut, PeerUnreachable

PATH = "/api/v1/paramedics/assignments/{emergency_id}"
PASSED_HEADERS = ("content-type", "retry-after")
"""The headers of the paramedic service's answer handed back with it."""


class ParamedicClient(PeerClient):
    """One pooled HTTP client to the paramedic service
    (:class:`~healthflow.common.peers.PeerClient`: started and closed with the service's
    runtime; ``timeout`` seconds for the whole exchange)."""

    async def assign(self, token: str, emergency_id: str, body: bytes) -> Response:
        """The paramedic service's answer to ``PUT …/assignments/{emergency_id}`` with
        ``body`` (JSON bytes, as the caller sent them) and the caller's ``token``.

        Raises:
            ServiceUnavailable: the paramedic service cannot be reached (503).
            GatewayTimeout: it did not answer within ``timeout`` seconds (504).
        """
        path = PATH.format(emergency_id=quote(emergency_id, safe=""))
        try:
            answer = await self.call("PUT", path, token, content=body,
                                     content_type="application/json")
        except PeerTimedOut:
            raise GatewayTimeout("the paramedic service did not answer in time; the "
                                 "assignment may or may not have been made") from None
        except PeerUnreachable as exc:
            raise ServiceUnavailable(f"the paramedic service cannot be reached "
                                     f"({exc})") from None
        headers = {name: answer.headers[name] for name in PASSED_HEADERS
                   if name in answer.headers}
        headers.setdefault("content-type", "application/json" if answer.is_success
                           else PROBLEM_JSON)
        return Response(answer.content, status_code=answer.status_code, headers=headers)
