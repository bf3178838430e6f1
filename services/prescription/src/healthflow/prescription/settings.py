"""Settings of the prescription service (environment prefix ``PRESCRIPTION_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from healthflow.common.care import CareSettings
from healthflow.common.keywrap import KeyEncryptionSettings
from healthflow.common.settings import ServiceSettings
from healthflow.common.topology import SERVICES
from healthflow.common.types import Ed25519Seed


class Settings(KeyEncryptionSettings, CareSettings):
    """Prescription settings; see :class:`~healthflow.common.settings.ServiceSettings`.

    A generated signing key (no ``PRESCRIPTION_SIGNING_KEY``) is kept wrapped with the
    key-encryption keys (``KEY_ENCRYPTION_KEYS`` / ``KEY_ENCRYPTION_KEYS_FILE``,
    :mod:`healthflow.common.keywrap`); production needs a KEK only then.
    """

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

    def own_production_problems(self) -> list[str]:
        if self.signing_key is None:
            return super().own_production_problems()  # the KEK wraps the kept key
        return ServiceSettings.own_production_problems(self)  # nothing kept to wrap
