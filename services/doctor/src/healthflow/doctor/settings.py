"""Doctor service settings (environment variables prefixed ``DOCTOR_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings
from healthflow.common.topology import SERVICES

INFO = SERVICES["doctor"]


class Settings(ServiceSettings):
    """Settings of the doctor service; see :class:`ServiceSettings` for the shared ones."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_prefix=INFO.env_prefix
    )

    service_name: str = INFO.name
    port: int = Field(default=INFO.port, ge=1, le=65535)
    # How often (seconds) to look for search dates computed on an earlier day.
    open_dates_refresh_seconds: float = Field(default=3600.0, gt=0)
