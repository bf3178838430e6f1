"""Hospital service settings (environment variables prefixed ``HOSPITAL_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings
from healthflow.common.topology import SERVICES

INFO = SERVICES["hospital"]


class Settings(ServiceSettings):
    """Settings of the hospital service; see :class:`ServiceSettings` for the shared ones."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_prefix=INFO.env_prefix
    )

    service_name: str = INFO.name
    port: int = Field(default=INFO.port, ge=1, le=65535)
