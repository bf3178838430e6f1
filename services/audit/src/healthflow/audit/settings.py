"""Settings of the audit service (environment variables prefixed ``AUDIT_``)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from healthflow.common.keywrap import KeyEncryptionSettings
from healthflow.common.settings import ServiceSettings
from healthflow.common.types import Ed25519Seed

_ORIGIN = re.compile(r"^[^\s+]+$")


class Settings(KeyEncryptionSettings):
    """Audit settings; see :class:`~healthflow.common.settings.ServiceSettings` for the rest.

    ``append_batch_max``: at most this many concurrently delivered events are
    appended in one transaction (group commit; 1 = one transaction per event).

    Signed checkpoints (:mod:`healthflow.audit.checkpoints`): ``checkpoint_origin``
    is the log's name, the first line of each checkpoint and the signing key's
    name (C2SP tlog-checkpoint; no spaces or ``+``); a checkpoint is signed every
    ``checkpoint_interval`` seconds when the log grew, written to the database,
    to the blob store (``checkpoint_to_blobs``) and as a file under
    ``checkpoint_dir``.

    A generated signing key (``allow_generated_signing_key``) is kept wrapped with the
    key-encryption keys (``KEY_ENCRYPTION_KEYS`` / ``KEY_ENCRYPTION_KEYS_FILE``,
    :mod:`healthflow.common.keywrap`), as auth keeps its signing keys; production
    needs a KEK only then (a configured key is never stored).
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_prefix="AUDIT_",
        hide_input_in_errors=True,  # a malformed signing key is still a secret
    )

    service_name: str = "audit"
    port: int = Field(default=8102, ge=1, le=65535)
    prefetch: int = Field(default=64, ge=1, le=10_000)
    append_batch_max: int = Field(default=64, ge=1, le=1_000)
    checkpoint_origin: str = Field(default="healthflow.local/audit", min_length=1,
                                   max_length=255)
    checkpoint_interval: float = Field(default=60.0, gt=0, le=86_400)  # seconds
    checkpoint_dir: Path = Path("var/audit-checkpoints")
    checkpoint_to_blobs: bool = True
    checkpoint_signing_key: Ed25519Seed | None = None
    """The Ed25519 seed that signs checkpoints (32 bytes, base64url). A secret: never in a
    repr, a log line or an error message; a malformed one refuses to start. Unset, the
    service refuses to start unless ``allow_generated_signing_key``."""
    allow_generated_signing_key: bool = False
    """Without a signing key, make one and keep it in the database. For local runs only
    (the devkit runner sets it): whoever can write the database could then re-sign a
    rewritten log. Off by default, so a deployment without the key fails to start."""

    def own_production_problems(self) -> list[str]:
        if self.checkpoint_signing_key is None and self.allow_generated_signing_key:
            return super().own_production_problems()  # the KEK wraps the stored key
        return ServiceSettings.own_production_problems(self)  # nothing stored to wrap

    @field_validator("checkpoint_origin")
    @classmethod
    def _an_origin(cls, value: str) -> str:
        if not _ORIGIN.match(value):
            raise ValueError("a checkpoint origin has no spaces or '+' (C2SP signed-note)")
        return value

