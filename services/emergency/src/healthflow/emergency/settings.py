"""Settings of the emergency service (environment prefix ``EMERGENCY_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings
from healthflow.common.topology import SERVICES


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="EMERGENCY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "emergency"
    port: int = SERVICES["emergency"].port

    stream_heartbeat_s: float = Field(15.0, gt=0)
    """Seconds between ``: ping`` comments on the live streams (keeps proxies from
    closing them)."""
