"""Settings of the teleconference service (environment prefix ``TELECONFERENCE_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings
from healthflow.common.topology import SERVICES


class Settings(ServiceSettings):
    """``janus_*``: the Janus server this service drives (its client API, its admin API,
    their secrets and the VideoRoom ``admin_key``), on the internal network only;
    ``open_before_seconds`` / ``close_after_seconds``: a room's window around its
    appointment; ``ice_servers``: STUN/TURN URLs handed to clients
    (``turn:turn.example.org:3478``), with TURN credentials from ``turn_secret``
    (coturn's ``static-auth-secret``) living ``turn_ttl_seconds``."""

    model_config = SettingsConfigDict(
        env_prefix="TELECONFERENCE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "teleconference"
    port: int = SERVICES["teleconference"].port
    janus_url: str = "http://127.0.0.1:8088/janus"
    janus_admin_url: str = "http://127.0.0.1:7088/admin"
    janus_api_secret: SecretStr = SecretStr("")
    janus_admin_secret: SecretStr = SecretStr("")
    janus_room_admin_key: SecretStr = SecretStr("")
    janus_timeout_seconds: float = Field(default=20.0, gt=0)
    open_before_seconds: int = Field(default=15 * 60, ge=0)
    close_after_seconds: int = Field(default=30 * 60, ge=0)
    ice_servers: list[str] = Field(default_factory=list)
    turn_secret: SecretStr | None = None
    turn_ttl_seconds: int = Field(default=600, ge=60, le=86400)
    keepalive_seconds: float = Field(default=25.0, gt=0)
    sweep_seconds: float = Field(default=30.0, gt=0)
