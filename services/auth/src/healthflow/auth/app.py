"""The composition root of the auth service: ``create_app(settings=None, transport=None)``."""

from __future__ import annotations

from fastapi import FastAPI

from healthflow.auth import api, store
from healthflow.auth.keys import KeyRing
from healthflow.auth.passwords import PasswordHasher
from healthflow.auth.service import Auth
from healthflow.auth.settings import Settings
from healthflow.auth.throttle import LoginThrottle
from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.common.workers import Hooks

DESCRIPTION = """Accounts, passwords (Argon2id), sessions with rotating refresh tokens,
EdDSA access tokens (RFC 9068) and the JWKS every service verifies them with."""


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> FastAPI:
    """The auth service app; ``transport`` overrides the one ``settings.transport`` names.

    ``app.state.auth`` holds what the use cases need, ``app.state.keys`` the key
    ring, and ``app.state.verifier`` a token verifier fed from the key ring
    (set at start-up and after every key reload).
    """
    settings = settings or load_settings(Settings)
    runtime = ServiceRuntime(settings, indexes=store.INDEXES, transport=transport)
    app = create_service_app(runtime, routers=api.routers, title="HealthFlow auth",
                             description=DESCRIPTION)
    keyring = KeyRing(runtime, settings, app.state)
    app.state.keys = keyring
    app.state.auth = Auth(runtime=runtime, settings=settings, hasher=PasswordHasher(settings),
                          throttle=LoginThrottle(settings), keys=keyring)

    # Loads (or creates) the signing keys and reloads them on a timer of its own.
    runtime.add_worker(Hooks("auth-keyring", keyring.start, keyring.stop))
    return app
