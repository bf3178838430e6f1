"""Service-to-service credentials for the ``/internal/*`` routes.

The auth service's ``/internal/revocations`` and ``/internal/person-keys/{user_id}`` are
never routed by the gateway, and they also answer only a caller that proves which
service it is: ``Authorization: Service <service>:<token>``, where ``token`` is the
service's own: base64url(HMAC-SHA256(``INTERNAL_SERVICE_KEY``, ``"healthflow-internal:"
+ service``)) (RFC 2104). Auth holds the key (``INTERNAL_SERVICE_KEY`` or ``…_FILE``) and
recomputes the token of the service named, compared in constant time; each caller holds
only its own token (``<SERVICE>_INTERNAL_TOKEN`` or ``…_FILE``: compose's
``internal_token_<service>`` secrets, derived by ``make compose-secrets``; in Kubernetes
``python -m healthflow.common.servicecredentials <service>``), so it cannot name itself
as another. Without a token a caller derives its own from the key it was given (local
runs: one random key for all); with neither, the built-in development key, which
production refuses. Then the route checks that service may call it
(:func:`require_service`): person keys only for the services that open sealed personal
values (:data:`PERSON_KEY_READERS`).

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
from healthflow.common.settings import DEVELOPMENT_INTERNAL_KEY, ServiceSettings

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
    """The request headers with which ``service`` calls an ``/internal`` route, its token
    derived from ``key``."""
    return token_authorization(service, service_token(key, service))


def token_authorization(service: str, token: str) -> dict[str, str]:
    """The request headers presenting ``service``'s ``token``."""
    return {"Authorization": f"{SCHEME} {service}:{token}"}


def checking_key(settings: ServiceSettings) -> str:
    """The key callers are checked with: ``INTERNAL_SERVICE_KEY``, else the built-in one."""
    key = settings.internal_service_key
    return DEVELOPMENT_KEY if key is None else key.get_secret_value()


def caller_authorization(settings: ServiceSettings) -> dict[str, str]:
    """The headers with which the service of ``settings`` (``service_name``) calls an
    ``/internal`` route: its ``INTERNAL_TOKEN``, else one derived from its key."""
    if settings.internal_token is not None:
        return token_authorization(settings.service_name,
                                   settings.internal_token.get_secret_value())
    return authorization(checking_key(settings), settings.service_name)


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
        key = checking_key(request.app.state.runtime.settings)
        service = caller(request.headers.get("Authorization"), key)
        if allowed and service not in allowed:
            raise Forbidden(f"the {service} service may not call this internal route")
        return service

    return dependency


def main(argv: list[str] | None = None) -> int:
    """``python -m healthflow.common.servicecredentials SERVICE…``: each service's
    ``INTERNAL_TOKEN`` under the key in ``INTERNAL_SERVICE_KEY`` (or the file
    ``INTERNAL_SERVICE_KEY_FILE`` names), one ``SERVICE_INTERNAL_TOKEN=…`` line each."""
    import os
    import sys
    from pathlib import Path

    services = sys.argv[1:] if argv is None else argv
    path = os.environ.get("INTERNAL_SERVICE_KEY_FILE")
    key = (Path(path).read_text(encoding="utf-8").strip() if path
           else os.environ.get("INTERNAL_SERVICE_KEY", ""))
    if not key or not services:
        print("usage: INTERNAL_SERVICE_KEY=… python -m healthflow.common.servicecredentials "
              "SERVICE…", file=sys.stderr)
        return 2
    for service in services:
        print(f"{service.upper()}_INTERNAL_TOKEN={service_token(key, service)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
