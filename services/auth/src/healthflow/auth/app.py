"""The composition root of the auth service: ``create_app(settings=None, transport=None)``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from healthflow.auth import api, revocation, store
from healthflow.auth.keys import KeyRing
from healthflow.auth.passwords import PasswordHasher
from healthflow.auth.service import Auth
from healthflow.auth.settings import Settings
from healthflow.auth.throttle import LoginThrottle
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.common.workers import Hooks
from healthflow.contracts.auth import SigningKeyRevoked

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

    # Its own revocations come from its database (no HTTP call to itself); a key revoked
    # by another replica stops this one's signing with it at once.
    async def snapshot() -> dict[str, Any]:
        return await revocation.revocation_snapshot(runtime)

    async def on_revocation(event: CloudEvent) -> None:
        if event.type == SigningKeyRevoked.event_type and keyring.loaded:
            await keyring.reload()

    runtime.revocation_feed.snapshot = snapshot
    runtime.revocation_feed.on_event = on_revocation
    return app
