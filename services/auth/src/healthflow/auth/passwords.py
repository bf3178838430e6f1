"""Argon2id password hashing (``argon2-cffi``), off the event loop and bounded.

Each hash or verification runs in a worker thread, at most
``settings.hash_concurrency`` at once (each holds ``argon2_memory_cost`` KiB),
so a burst of logins neither blocks the event loop nor exhausts memory.
Passwords are NFKC-normalised before hashing and verifying (NIST SP 800-63B
§5.1.1.2). Hashes are PHC strings (``$argon2id$v=19$m=65536,t=3,p=4$…``) that
carry their parameters, so changed settings apply at each user's next login
(:meth:`PasswordHasher.needs_rehash`).
"""

from __future__ import annotations

import asyncio
import secrets

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from healthflow.auth.domain import normalize_password
from healthflow.auth.settings import Settings


class PasswordHasher:
    """Hash and verify passwords with Argon2id under ``settings``' parameters."""

    def __init__(self, settings: Settings) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
            type=argon2.Type.ID,
        )
        self._slots = asyncio.Semaphore(settings.hash_concurrency)
        # Verified when the email matches no account, so that an unknown email
        # costs the same time as a wrong password (no user enumeration by timing).
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(24))

    @property
    def parameters(self) -> dict[str, int]:
        """``{"time_cost", "memory_cost" (KiB), "parallelism"}`` in force."""
        return {
            "time_cost": self._hasher.time_cost,
            "memory_cost": self._hasher.memory_cost,
            "parallelism": self._hasher.parallelism,
        }

    async def hash(self, password: str) -> str:
        """The PHC-format Argon2id hash of ``password``."""
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, normalize_password(password))

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches ``password_hash``.

        ``None`` (no such account) verifies against a dummy hash and answers
        ``False`` after the same work. A corrupt hash answers ``False``.
        """
        candidate = password_hash or self._dummy_hash
        async with self._slots:
            try:
                ok = await asyncio.to_thread(
                    self._hasher.verify, candidate, normalize_password(password)
                )
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
        return bool(ok) and password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether ``password_hash`` was made with other parameters than those in force."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True
