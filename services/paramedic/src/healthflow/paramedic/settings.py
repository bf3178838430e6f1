"""Settings of the paramedic service (environment prefix ``PARAMEDIC_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings
from healthflow.common.topology import SERVICES


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PARAMEDIC_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "paramedic"
    port: int = SERVICES["paramedic"].port

    position_max_age_s: float = Field(120.0, gt=0)
    """A unit whose last position is older than this (seconds) is not assignable."""
    position_max_skew_s: float = Field(30.0, ge=0)
    """How far (seconds) a reported time may be ahead of the server's clock."""
    offer_timeout_s: float = Field(30.0, gt=0)
    """Seconds a unit has to accept an offered task before the next unit is offered it."""
    ack_timeout_s: float = Field(8.0, gt=0)
    """Seconds the app has to acknowledge an offer pushed on its open task stream (ack,
    accept or decline) before the offer also goes out by SMS (once)."""
    search_radius_m: float = Field(50_000.0, gt=0)
    """Candidates are available units within this great-circle distance (metres)."""
    candidates: int = Field(10, ge=1, le=100)
    """How many of the nearest units one assignment tries to claim, nearest first."""
    escalation_retry_s: float = Field(30.0, gt=0)
    """Seconds between attempts to assign an escalated emergency again."""
    timer_interval_s: float = Field(1.0, gt=0)
    """How often (seconds) the job workers look for due timers."""
    eta_change_s: float = Field(30.0, ge=0)
    """A unit's ETA is published at once when it moved by this many seconds (or by
    ``eta_change_ratio`` of the last published one, whichever is larger) …"""
    eta_change_ratio: float = Field(0.2, ge=0)
    """… as a fraction of the last published travel time."""
    eta_interval_s: float = Field(30.0, gt=0)
    """Otherwise a unit's ETA is published at most this often (seconds of report time):
    every ``paramedic.eta_updated`` is kept for good in the audit log."""
    stream_heartbeat_s: float = Field(15.0, gt=0)
    """Seconds between ``: ping`` comments on the task stream (keeps proxies from closing it)."""
    road_graph: str = "helsinki"
    """The bundled OSM road graph candidates are re-ranked on (``roads.GRAPHS``); empty:
    rank by straight-line distance only."""
