"""Settings of the patient service (environment prefix ``PATIENT_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from healthflow.common.care import CareSettings
from healthflow.common.topology import SERVICES


class Settings(CareSettings):
    model_config = SettingsConfigDict(
        env_prefix="PATIENT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "patient"
    port: int = SERVICES["patient"].port
