"""Settings of the audit service (environment variables prefixed ``AUDIT_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings


class Settings(ServiceSettings):
    """Audit settings; see :class:`~healthflow.common.settings.ServiceSettings` for the rest.

    ``append_batch_max``: at most this many concurrently delivered events are
    appended in one transaction (group commit; 1 = one transaction per event).
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_prefix="AUDIT_"
    )

    service_name: str = "audit"
    port: int = Field(default=8102, ge=1, le=65535)
    prefetch: int = Field(default=64, ge=1, le=10_000)
    append_batch_max: int = Field(default=64, ge=1, le=1_000)
