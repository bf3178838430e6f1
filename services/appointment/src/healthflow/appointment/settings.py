"""Settings of the appointment service (environment prefix ``APPOINTMENT_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings
from healthflow.common.topology import SERVICES


class Settings(ServiceSettings):
    """Appointment service settings; durations in minutes or days as named."""

    model_config = SettingsConfigDict(
        env_prefix="APPOINTMENT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "appointment"
    port: int = SERVICES["appointment"].port
    # Patients may not cancel or reschedule closer than this to the start; staff may.
    cancel_window_minutes: int = Field(default=120, ge=0)
    reschedule_window_minutes: int = Field(default=120, ge=0)
    # Longest range GET /api/v1/slots accepts.
    max_slot_range_days: int = Field(default=31, ge=1, le=366)
    # No slot hoarding (issue 16): active appointments still to start that a patient may
    # hold when booking for themselves (staff booking for a patient are not capped).
    max_future_appointments_per_patient: int = Field(default=10, ge=1, le=1000)
