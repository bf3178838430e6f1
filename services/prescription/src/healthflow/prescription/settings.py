"""Settings of the prescription service (environment prefix ``PRESCRIPTION_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings
from healthflow.common.topology import SERVICES


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRESCRIPTION_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "prescription"
    port: int = SERVICES["prescription"].port
    signing_key: str | None = None
    """The Ed25519 seed that signs printed prescriptions (32 bytes, base64url); unset:
    one is made on first use and kept in the database (development)."""
