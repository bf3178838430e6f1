"""Settings of the prescription service (environment prefix ``PRESCRIPTION_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings
from healthflow.common.topology import SERVICES
from healthflow.common.types import Ed25519Seed


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRESCRIPTION_", env_file=".env", env_file_encoding="utf-8", extra="ignore",
        hide_input_in_errors=True,  # a malformed signing key is still a secret
    )

    service_name: str = "prescription"
    port: int = SERVICES["prescription"].port
    signing_key: Ed25519Seed | None = None
    """The Ed25519 seed that signs printed prescriptions (32 bytes, base64url); unset:
    one is made on first use and kept in the database (development). A secret: never
    in a repr, a log line or an error message; a malformed one refuses to start."""

