"""Command line of the auth service, and the first-admin hook of the platform runner.

::

    python -m healthflow.auth                      # serve the API (same as `serve`)
    python -m healthflow.auth serve
    python -m healthflow.auth create-admin --email admin@example.org [--full-name "Ada Admin"]
    python -m healthflow.auth rotate-keys
    python -m healthflow.auth rewrap-keys          # after a KEK rotation, without a restart
                                                   # (signing keys and TOTP keys)

``create-admin`` reads the password from ``HEALTHFLOW_ADMIN_PASSWORD``, or
prompts for it (twice) on a terminal; the email may come from
``HEALTHFLOW_ADMIN_EMAIL``. It is idempotent: when the account exists it says so
and exits 0. It prints where the credentials came from, never the password.
Exit codes: 0 done, 2 unusable input (weak password, no password, bad email).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from types import SimpleNamespace

from email_validator import EmailNotValidError, validate_email
from pymongo import AsyncMongoClient

from healthflow.auth import service, signing, store
from healthflow.auth.domain import PasswordRejected, Rotation
from healthflow.auth.keys import (
    KeyRing,
    check_factors,
    check_keys,
    protect_factors,
    protect_keys,
)
from healthflow.auth.passwords import PasswordHasher
from healthflow.auth.settings import Settings
from healthflow.common import mongo
from healthflow.common.events.inprocess import InProcessTransport
from healthflow.common.mongo import Document
from healthflow.common.permissions import Role
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import ConfigurationError, load_settings

PASSWORD_ENV = "HEALTHFLOW_ADMIN_PASSWORD"  # noqa: S105 - a variable name
EMAIL_ENV = "HEALTHFLOW_ADMIN_EMAIL"


class _OfflineRuntime:
    """A :class:`ServiceRuntime` on a private MongoDB client, for one-off commands.

    It writes through the same transactions and outbox as the service (the
    running service's relay publishes the events), but owns its client, so it
    can run on any event loop and closes what it opened.
    """

    def __init__(self, settings: Settings) -> None:
        self.client: AsyncMongoClient[Document] = AsyncMongoClient(
            settings.mongodb_url, tz_aware=True, tzinfo=UTC, uuidRepresentation="standard",
            serverSelectionTimeoutMS=5_000,
        )
        db = self.client.get_database(settings.database_name,
                                      codec_options=mongo.CODEC_OPTIONS)
        # Never connected: events stay in the outbox for the service's relay.
        self.runtime = ServiceRuntime(settings, indexes=store.INDEXES,
                                      transport=InProcessTransport(db))
        self.runtime.client = self.client
        self.runtime.db = db

    async def __aenter__(self) -> ServiceRuntime:
        await mongo.ensure_indexes(self.runtime.db, self.runtime.indexes)
        return self.runtime

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()


async def ensure_first_admin_async(settings: Settings, email: str, password: str, *,
                                   full_name: str = "Administrator",
                                   source: str = "the caller") -> str:
    """Async form of :func:`ensure_first_admin`."""
    try:
        email = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"the admin email is not valid: {exc}") from None
    async with _OfflineRuntime(settings) as runtime:
        user, created = await service.ensure_first_admin(
            runtime, PasswordHasher(settings), settings.key_wrapper(), email=email,
            password=password, full_name=full_name)
    if not created:
        kind = "an admin" if Role.ADMIN in user["roles"] else "NOT an admin"
        print(f"first admin: the account {email} already exists ({kind}, id "
              f"{user['_id']}); nothing changed")
        return str(user["_id"])
    print(f"first admin: created {email} (id {user['_id']}); password taken from {source}")
    return str(user["_id"])


def ensure_first_admin(settings: Settings, email: str, password: str, *,
                       full_name: str = "Administrator", source: str = "the caller") -> str:
    """Create the admin ``email`` unless an account with that email exists; its user id.

    Idempotent: an existing account (compared case-insensitively) is reported
    and left unchanged. Prints what it did and where the password came from
    (``source``, e.g. ``"HEALTHFLOW_ADMIN_PASSWORD"``), never the password.
    Callable from synchronous code and from inside a running event loop (it
    then works on a thread of its own; it blocks the caller until done).
    Publishes ``user.registered`` through the outbox.

    Raises:
        PasswordRejected: (a ``ValueError``) the password breaks the policy.
        ValueError: the email is not valid.
        pymongo.errors.PyMongoError: the database cannot be reached.
    """

    def run() -> str:
        return asyncio.run(ensure_first_admin_async(settings, email, password,
                                                    full_name=full_name, source=source))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


async def rotate_keys(settings: Settings) -> Rotation:
    """Rotate the signing keys (as ``POST /api/v1/auth/keys/rotate`` does)."""
    async with _OfflineRuntime(settings) as runtime:
        ring = KeyRing(runtime, settings, SimpleNamespace())
        return await signing.rotate_keys(runtime, ring, actor="system:auth-cli")


async def rewrap_keys(settings: Settings) -> tuple[tuple[int, int], tuple[int, int]]:
    """Wrap clear stored keys and re-wrap envelopes of a previous KEK with the current
    one (what every replica does at start), then check every stored key opens:
    ``(wrapped, rewrapped)`` of the signing keys, then of the TOTP keys.

    Raises:
        KeyUnwrapError: a stored key does not open with the configured KEKs.
    """
    async with _OfflineRuntime(settings) as runtime:
        wrapper = settings.key_wrapper()
        keys = await protect_keys(runtime.db, wrapper)
        factors = await protect_factors(runtime.db, wrapper)
        await check_keys(runtime.db, wrapper)
        await check_factors(runtime.db, wrapper)
        return keys, factors


def _read_password() -> tuple[str, str]:
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password, f"the environment variable {PASSWORD_ENV}"
    if not sys.stdin.isatty():
        raise ValueError(f"set {PASSWORD_ENV} or run on a terminal to be prompted")
    first = getpass.getpass("Password for the admin: ")
    if first != getpass.getpass("Repeat the password: "):
        raise ValueError("the two passwords differ")
    return first, "the prompt"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m healthflow.auth",
                                     description="HealthFlow auth service")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the API (the default)")
    admin = commands.add_parser("create-admin", help=f"create the first admin (password from "
                                                     f"{PASSWORD_ENV} or a prompt)")
    admin.add_argument("--email", default=os.environ.get(EMAIL_ENV),
                       help=f"the admin's email (default: ${EMAIL_ENV})")
    admin.add_argument("--full-name", default="Administrator")
    commands.add_parser("rotate-keys", help="promote the next signing key, retire the active one")
    commands.add_parser("rewrap-keys", help="re-wrap the stored signing and TOTP keys with the "
                                            "current key-encryption key (after a KEK rotation)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(Settings)
    except ConfigurationError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command in (None, "serve"):
        from healthflow.auth.app import create_app
        from healthflow.common.http import serve

        serve(create_app(settings), settings)
        return 0
    if args.command == "create-admin":
        if not args.email:
            print(f"give --email or set {EMAIL_ENV}", file=sys.stderr)
            return 2
        try:
            password, source = _read_password()
            ensure_first_admin(settings, args.email, password, full_name=args.full_name,
                               source=source)
        except PasswordRejected as exc:
            print(f"the admin password was refused: {exc}", file=sys.stderr)
            return 2
        except ValueError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        return 0
    if args.command == "rotate-keys":
        rotation = asyncio.run(rotate_keys(settings))
        print(f"signing with {rotation.activated_kid}; next {rotation.next_kid}; "
              f"retired {rotation.retired_kid or '-'} until "
              f"{rotation.retired_until.isoformat() if rotation.retired_until else '-'}")
        return 0
    if args.command == "rewrap-keys":
        try:
            (wrapped, rewrapped), (totp_wrapped, totp_rewrapped) = asyncio.run(
                rewrap_keys(settings))
        except ConfigurationError as exc:
            print(exc, file=sys.stderr)
            return 2
        print(f"wrapped {wrapped} clear key(s), re-wrapped {rewrapped} with KEK "
              f"{settings.key_wrapper().current_kek_id}; TOTP keys: {totp_wrapped} clear "
              f"wrapped, {totp_rewrapped} re-wrapped")
        return 0
    return 2
