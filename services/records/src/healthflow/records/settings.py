"""Settings of the records service (environment prefix ``RECORDS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from healthflow.common.care import CareSettings
from healthflow.common.service import ServiceRuntime
from healthflow.common.topology import SERVICES

PRESCRIPTION_PORT = SERVICES["prescription"].port if "prescription" in SERVICES else 8109


class Settings(CareSettings):
    model_config = SettingsConfigDict(
        env_prefix="RECORDS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "records"
    port: int = SERVICES["records"].port
    # Uploads stream to S3: only the upload route takes a file as large as the largest
    # blob use (clinical documents, 50 MiB); every other route keeps the platform's
    # default ``max_body_bytes`` (1 MiB).
    upload_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    # How many uploaded files are checked (parsed by pypdf, decoded by Pillow, each in a
    # worker thread) at once; more uploads wait for a slot: decoding is CPU and memory
    # heavy (an image is decoded whole, up to files.MAX_PIXELS pixels).
    inspect_concurrency: int = Field(default=2, ge=1, le=16)
    # Seconds a presigned link to a file lives: short, a link is a bearer credential.
    link_ttl: int = Field(default=60, ge=1, le=3600)
    sweep_interval: float = Field(default=3600.0, gt=0)  # seconds between orphan sweeps
    sweep_older_than: float = Field(default=3600.0, gt=0)  # an orphan's minimum age, s
    # The prescription service's internal address (``RECORDS_PRESCRIPTION_URL`` or the
    # platform-wide ``PRESCRIPTION_URL`` the runner, compose and Kubernetes set from the
    # manifests' ``calls``): the FHIR export reads MedicationRequests there, with the
    # caller's token, giving up after ``prescription_timeout`` seconds.
    prescription_url: str = f"http://127.0.0.1:{PRESCRIPTION_PORT}"
    prescription_timeout: float = Field(default=3.0, gt=0, le=30)
    # Minutes a break-the-glass grant (emergency access without a care relationship) lasts.
    break_glass_minutes: int = Field(default=60, ge=1, le=24 * 60)


def settings_of(runtime: ServiceRuntime) -> Settings:
    """The records service's own settings (the runtime holds them as the base type)."""
    settings = runtime.settings
    assert isinstance(settings, Settings)
    return settings
