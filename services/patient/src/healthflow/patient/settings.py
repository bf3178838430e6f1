"""Settings of the patient service (environment prefix ``PATIENT_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings
from healthflow.common.topology import SERVICES


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PATIENT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "patient"
    port: int = SERVICES["patient"].port
    # Days (of 24 h) a doctor may still read the chart after the appointment that relates
    # them was completed (FHIR CareTeam ``period.end`` = completion + this; as the records
    # service's ``RECORDS_CARE_AFTER_ENCOUNTER_DAYS``). Judged at read time.
    care_after_encounter_days: int = Field(default=90, ge=0, le=3650)
