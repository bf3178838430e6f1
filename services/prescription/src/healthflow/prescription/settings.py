"""Settings of the prescription service (environment prefix ``PRESCRIPTION_``)."""

from __future__ import annotations

import base64
import binascii

from pydantic import SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings
from healthflow.common.topology import SERVICES


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRESCRIPTION_", env_file=".env", env_file_encoding="utf-8", extra="ignore",
        hide_input_in_errors=True,  # a malformed signing key is still a secret
    )

    service_name: str = "prescription"
    port: int = SERVICES["prescription"].port
    signing_key: SecretStr | None = None
    """The Ed25519 seed that signs printed prescriptions (32 bytes, base64url); unset:
    one is made on first use and kept in the database (development). A secret: never
    in a repr, a log line or an error message; a malformed one refuses to start."""

    @field_validator("signing_key")
    @classmethod
    def _a_32_byte_seed(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value()
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise ValueError("not base64url") from None
        if len(raw) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes (base64url, no padding)")
        return value
