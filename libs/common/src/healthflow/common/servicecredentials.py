"""Service-to-service credentials for the ``/internal/*`` routes.

The auth service's ``/internal/revocations`` and ``/internal/person-keys/{user_id}`` are
never routed by the gateway, and they also answer only a caller that proves which
service it is: ``Authorization: Service <service>:<token>``, where ``token`` is
base64url(HMAC-SHA256(``INTERNAL_SERVICE_KEY``, ``"healthflow-internal:" + service``))
(RFC 2104). The key is platform-wide (``INTERNAL_SERVICE_KEY`` or ``…_FILE``, compose's
``internal_service_key`` secret, Kubernetes' ``healthflow-platform`` Secret); a built-in
development key is refused in production like every default secret. The callee
recomputes the token of the service named and compares in constant time, then checks
that service may call the route (:func:`require_service`): person keys only for the
services that open sealed personal values (:data:`PERSON_KEY_READERS`).

Errors (RFC 9457 problem+json, rendered by :mod:`healthflow.common.errors`): no or
malformed credential, or a wrong token → 401 ``unauthorized``; a valid caller the route
does not serve → 403 ``forbidden``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable

from fastapi import Request

from healthflow.common.problems import Forbidden, Unauthorized
from healthflow.common.settings import DEVELOPMENT_INTERNAL_KEY

SCHEME = "Service"
DEVELOPMENT_KEY = DEVELOPMENT_INTERNAL_KEY
PERSON_KEY_READERS = frozenset({"notification", "patient", "prescription"})
"""The services that open sealed personal values (``GET /internal/person-keys/…``)."""
ANY_SERVICE: frozenset[str] = frozenset()
"""For :func:`require_service`: every authenticated service (the revocation snapshot)."""


def service_token(key: str, service: str) -> str:
    """``service``'s token under ``key``: base64url of HMAC-SHA256, no padding."""
    digest = hmac.new(key.encode(), f"healthflow-internal:{service}".encode(),
                      hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def authorization(key: str, service: str) -> dict[str, str]:
    """The request headers with which ``service`` calls an ``/internal`` route."""
    return {"Authorization": f"{SCHEME} {service}:{service_token(key, service)}"}


def caller(header: str | None, key: str) -> str:
    """The service an ``Authorization`` header proves, checked against ``key``.

    Raises:
        Unauthorized: no header, another scheme, a malformed value or a wrong token.
    """
    challenge = {"WWW-Authenticate": f'{SCHEME} realm="healthflow-internal"'}
    scheme, _, credential = (header or "").partition(" ")
    service, _, token = credential.strip().partition(":")
    if scheme != SCHEME or not service or not token:
        raise Unauthorized("a service credential is required (Authorization: Service "
                           "<service>:<token>)", headers=challenge)
    if not hmac.compare_digest(token.encode(), service_token(key, service).encode()):
        raise Unauthorized("the service credential is not valid", headers=challenge)
    return service


def require_service(allowed: Iterable[str] = ANY_SERVICE,
                    ) -> Callable[[Request], str]:
    """A FastAPI dependency: the calling service's name, checked with the app's
    ``INTERNAL_SERVICE_KEY`` (``request.app.state.runtime.settings``); only the
    ``allowed`` services (any authenticated one when empty).

    Raises:
        Unauthorized: see :func:`caller`.
        Forbidden: the caller is not among ``allowed``.
    """
    allowed = frozenset(allowed)

    def dependency(request: Request) -> str:
        key = request.app.state.runtime.settings.internal_service_key.get_secret_value()
        service = caller(request.headers.get("Authorization"), key)
        if allowed and service not in allowed:
            raise Forbidden(f"the {service} service may not call this internal route")
        return service

    return dependency
