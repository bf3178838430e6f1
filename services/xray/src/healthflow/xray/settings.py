"""Settings of the xray service (environment prefix ``XRAY_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from healthflow.common.care import CareSettings
from healthflow.common.topology import SERVICES

MiB = 1024 * 1024


class Settings(CareSettings):
    model_config = SettingsConfigDict(
        env_prefix="XRAY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "xray"
    port: int = SERVICES["xray"].port
    # Uploads stream to S3: only the upload route takes the largest image (the XRAY
    # blob use); every other route parses its body in memory and keeps the platform's
    # default ``max_body_bytes`` (1 MiB).
    upload_max_bytes: int = Field(default=512 * MiB, ge=1)
    link_ttl: int = Field(default=300, ge=1, le=3600)  # seconds a presigned link lives
    sweep_interval: float = Field(default=3600.0, gt=0)  # seconds between orphan sweeps
    sweep_older_than: float = Field(default=3600.0, gt=0)  # an orphan's minimum age, s
    # The DICOM C-STORE storage SCP (:mod:`healthflow.xray.dicom_scp`). 11112 is DICOM's
    # registered port (IANA "dicom"); 0 binds a free one (tests). It accepts only the
    # calling AE titles listed (JSON list in XRAY_DICOM_CALLING_AE_TITLES) and does not
    # start when there are none. AE titles: at most 16 characters (PS3.5 VR AE).
    dicom_host: str | None = None  # the interface it binds; None: the HTTP server's ``host``
    dicom_port: int = Field(default=SERVICES["xray"].listeners["dicom"], ge=0, le=65535)
    dicom_ae_title: str = Field(default="HEALTHFLOW", min_length=1, max_length=16)
    dicom_calling_ae_titles: list[str] = Field(default_factory=list)
    dicom_max_associations: int = Field(default=4, ge=1)  # associations at once, all peers
    # Of those, at most this many from one calling AE title / one peer IP address (more
    # are rejected, transient), so one modality or host cannot hold every slot.
    dicom_max_associations_per_calling_ae: int = Field(default=2, ge=1)
    dicom_max_associations_per_peer: int = Field(default=2, ge=1)
    # Seconds the SCP waits: for an association request or release answer (ACSE), for a
    # DIMSE message's next part (DIMSE), and on an idle connection before it aborts it
    # (network; pynetdicom's ARTIM). A peer that stalls holds a thread only this long.
    dicom_acse_timeout: float = Field(default=30.0, gt=0)
    dicom_dimse_timeout: float = Field(default=30.0, gt=0)
    dicom_network_timeout: float = Field(default=60.0, gt=0)
    # Pixels (Rows × Columns × frames, or a photograph's width × height, from the header)
    # above which an image is refused before any pixel is decoded (decompression bombs;
    # a 43 × 43 cm detector at 0.1 mm is 18.5 M). Pillow's own guard is set to it too.
    max_image_pixels: int = Field(default=60_000_000, ge=1)
    # The processing worker (:mod:`healthflow.xray.processing`): images analysed at once
    # (each decodes a full image in a thread) and seconds between looks at its queue.
    processing_concurrency: int = Field(default=2, ge=1)
    processing_interval: float = Field(default=1.0, gt=0)
