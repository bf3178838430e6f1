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
    public_base_url: str = "http://127.0.0.1:8000"
    """The gateway's public address (scheme, host, port; ``PRESCRIPTION_PUBLIC_BASE_URL``
    or the platform-wide ``PUBLIC_BASE_URL``): the verification URL a printed
    prescription's QR code holds, and so what its signature covers. Never taken from
    the request: ``Host``/``X-Forwarded-Host`` are the client's to choose."""
    signing_key: str | None = None
    """The Ed25519 seed that signs printed prescriptions (32 bytes, base64url); unset:
    one is made on first use and kept in the database (development)."""
