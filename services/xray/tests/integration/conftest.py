"""Fixtures: the xray service in-process on the real MongoDB-protocol server and the real
S3 server; orders made the way events and doctors make them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from healthflow.contracts.records import EncounterStarted
from healthflow.devkit.testing import TokenFactory, running_app
from healthflow.xray import service
from healthflow.xray.app import create_app
from healthflow.xray.settings import Settings

DOCTOR, PATIENT, RADIOGRAPHER = "dr-1", "p-1", "rad-1"
DICOM = {"Content-Type": "application/dicom"}


def settings_for(mongodb_url: str, s3_env: dict[str, str], unique_name: str,
                 **overrides: Any) -> Settings:
    """Settings on the test's own database and bucket (the DICOM SCP off unless
    ``dicom_calling_ae_titles`` is given)."""
    return Settings(mongodb_url=mongodb_url, mongodb_database=f"xray_{unique_name}",
                    transport="inprocess", s3_endpoint_url=s3_env["S3_ENDPOINT_URL"],
                    s3_access_key=s3_env["S3_ACCESS_KEY"],
                    s3_secret_key=s3_env["S3_SECRET_KEY"], s3_region=s3_env["S3_REGION"],
                    s3_bucket=f"xray-{unique_name}", **overrides)


@pytest.fixture
async def xray(mongodb_url: str, s3_env: dict[str, str], unique_name: str,
               tokens: TokenFactory) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(settings_for(mongodb_url, s3_env, unique_name))
    app.state.verifier = tokens.verifier()
    async with running_app(app) as http:
        yield http, app


async def ordered(http: httpx.AsyncClient, app: Any, tokens: TokenFactory,
                  patient: str = PATIENT, priority: str = "urgent") -> dict[str, Any]:
    """An in-progress encounter of DOCTOR with ``patient`` (as ``encounter.started``
    brings it) and an order in it."""
    encounter_id = str(uuid.uuid4())
    started = EncounterStarted(encounter_id=encounter_id, patient_id=patient,
                               practitioner_id=DOCTOR, appointment_id=None,
                               encounter_class="AMB", started_at=datetime.now(UTC))
    await app.state.runtime.transact(lambda uow: service.encounter_started(uow, started))
    response = await http.post("/api/v1/imaging/orders", headers=tokens.headers(
        DOCTOR, ("doctor",)), json={"encounter_id": encounter_id, "body_part": "CHEST",
                                    "view": "PA", "priority": priority,
                                    "question": "pneumonia?"})
    assert response.status_code == 201, response.text
    return dict(response.json())


MODALITY = "CR_ROOM_1"
"""The calling AE title the test SCP accepts."""


@pytest.fixture
async def pacs(mongodb_url: str, s3_env: dict[str, str], unique_name: str,
               tokens: TokenFactory) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The service with its SCP on a free port, accepting MODALITY only."""
    app = create_app(settings_for(mongodb_url, s3_env, unique_name, dicom_port=0,
                                  dicom_calling_ae_titles=[MODALITY]))
    app.state.verifier = tokens.verifier()
    async with running_app(app) as http:
        yield http, app
