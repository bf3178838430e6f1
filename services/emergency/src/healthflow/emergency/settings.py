"""Settings of the emergency service (environment prefix ``EMERGENCY_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings
from healthflow.common.topology import SERVICES

PARAMEDIC_PORT = SERVICES["paramedic"].port if "paramedic" in SERVICES else 8112


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="EMERGENCY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "emergency"
    port: int = SERVICES["emergency"].port

    stream_heartbeat_s: float = Field(15.0, gt=0)
    """Seconds between ``: ping`` comments on the live streams (keeps proxies from
    closing them)."""

    photo_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1, le=20 * 1024 * 1024)
    """The largest photo, bytes (a phone's JPEG is a few MiB); more is 413."""
    photo_max_pixels: int = Field(default=40_000_000, ge=1)
    """The most pixels a photo may have (a 12 MP phone photo has 12 000 000), checked
    from its header before it is decoded: more is 422 ``too-many-pixels``."""
    max_photos: int = Field(default=3, ge=1, le=20)
    """Photos per emergency."""
    inspect_concurrency: int = Field(default=2, ge=1, le=16)
    """Photos decoded (Pillow, in worker threads) at once; more uploads wait."""
    sweep_interval: float = Field(default=3600.0, gt=0)
    """Seconds between sweeps of stored photos no emergency references."""
    sweep_older_than: float = Field(default=3600.0, gt=0)
    """An unreferenced photo's minimum age before the sweep deletes it, seconds."""
    paramedic_url: str = f"http://127.0.0.1:{PARAMEDIC_PORT}"
    """The paramedic service's internal address (``EMERGENCY_PARAMEDIC_URL`` or the
    platform-wide ``PARAMEDIC_URL`` the runner, compose and Kubernetes set from the
    manifests' ``calls``): a dispatcher's ``PUT …/{id}/assignment`` is forwarded there,
    with the caller's token."""
    paramedic_timeout: float = Field(default=5.0, gt=0, le=30)
    """Seconds the whole forwarded exchange may take before the answer is 504."""
