"""Settings of the teleconference service (environment prefix ``TELECONFERENCE_``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings, env_name
from healthflow.common.topology import SERVICES


class Settings(ServiceSettings):
    """``janus_*``: the Janus server this service drives (its client API, its admin API,
    their secrets and the VideoRoom ``admin_key``), on the internal network only;
    ``open_before_seconds`` / ``close_after_seconds``: a room's window around its
    appointment; ``ice_servers``: STUN/TURN URLs handed to clients
    (``turn:turn.example.org:3478``), with TURN credentials from ``turn_secret``
    (coturn's ``static-auth-secret``) living ``turn_ttl_seconds``;
    ``janus_recordings_dir``: where Janus writes recordings (``.mjr``), a directory this
    service reads too (the same path, a shared volume in compose); ``janus_pp_rec``: the
    ``janus-pp-rec`` program (Debian's ``janus-tools``) that turns them into media files;
    ``recording_retention_days``: how long a recording is kept before it is deleted,
    unless ``recording_retention_days_by_hospital`` (``{"<hospital id>": days}``) names
    the consultation's hospital (its doctor's first affiliated hospital).

    ``HEALTHFLOW_ENV=production`` refuses (:meth:`own_production_problems`) an unset
    Janus API secret, admin secret or room admin key, and TURN servers without a
    ``turn_secret``."""

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
    janus_recordings_dir: str = "var/janus/recordings"
    janus_pp_rec: str = "janus-pp-rec"
    recording_retention_days: int = Field(default=90, ge=1, le=3650)
    recording_retention_days_by_hospital: dict[str, Annotated[int, Field(ge=1, le=3650)]] = (
        Field(default_factory=dict))
    link_ttl_seconds: int = Field(default=60, ge=1, le=3600)
    keepalive_seconds: float = Field(default=25.0, gt=0)
    sweep_seconds: float = Field(default=30.0, gt=0)

    def own_production_problems(self) -> list[str]:
        """Janus secrets left empty; TURN servers given without their shared secret."""
        problems = [f"{env_name(type(self), name)}: is not set (Janus would take anyone's "
                    "requests)"
                    for name in ("janus_api_secret", "janus_admin_secret",
                                 "janus_room_admin_key")
                    if not getattr(self, name).get_secret_value()]
        if (any(url.startswith(("turn:", "turns:")) for url in self.ice_servers)
                and (self.turn_secret is None or not self.turn_secret.get_secret_value())):
            problems.append(f"{env_name(type(self), 'turn_secret')}: is not set, but "
                            "ice_servers names TURN servers (clients could not use them)")
        return problems

    def retention_for(self, hospital_id: str | None) -> int:
        """Days a recording of a consultation of ``hospital_id`` is kept."""
        return self.recording_retention_days_by_hospital.get(
            hospital_id or "", self.recording_retention_days)
