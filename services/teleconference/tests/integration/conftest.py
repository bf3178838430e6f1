"""The teleconference app in-process on the real MongoDB-protocol server, S3 and a real
Janus, and the helpers its tests share."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from healthflow.common.events.outbox import OUTBOX
from healthflow.contracts.appointment import AppointmentBooked
from healthflow.devkit.janus import EmbeddedJanus
from healthflow.devkit.testing import TokenFactory, eventually, running_app
from healthflow.devkit.webrtc import Peer
from healthflow.teleconference import service
from healthflow.teleconference.app import create_app
from healthflow.teleconference.settings import Settings

Client = tuple[httpx.AsyncClient, Any]


@pytest.fixture
async def client(mongodb_url: str, unique_name: str, tokens: TokenFactory,
                 janus_server: EmbeddedJanus, s3_env: dict[str, str]) -> AsyncIterator[Client]:
    env = janus_server.env()
    settings = Settings(
        s3_endpoint_url=s3_env["S3_ENDPOINT_URL"], s3_access_key=s3_env["S3_ACCESS_KEY"],
        s3_secret_key=s3_env["S3_SECRET_KEY"], s3_region=s3_env["S3_REGION"],
        s3_bucket=f"tele-{unique_name}", s3_public_endpoint_url=s3_env["S3_ENDPOINT_URL"],
        janus_recordings_dir=str(janus_server.recordings),
        recording_retention_days_by_hospital={"h-tele": 7},
        retry_delays=[0.2, 0.5, 1.0],
        mongodb_url=mongodb_url, mongodb_database=f"teleconference_{unique_name}",
        transport="inprocess", janus_url=env["TELECONFERENCE_JANUS_URL"],
        janus_admin_url=env["TELECONFERENCE_JANUS_ADMIN_URL"],
        janus_api_secret=env["TELECONFERENCE_JANUS_API_SECRET"],
        janus_admin_secret=env["TELECONFERENCE_JANUS_ADMIN_SECRET"],
        janus_room_admin_key=env["TELECONFERENCE_JANUS_ROOM_ADMIN_KEY"],
        ice_servers=["stun:stun.example.org:3478", "turn:turn.example.org:3478"],
        turn_secret="turn-shared-secret")
    app = create_app(settings)
    app.state.verifier = tokens.verifier()
    async with running_app(app) as http:
        yield http, app


def appointment(*, starts_in: timedelta = timedelta(minutes=5), status: str = "confirmed",
                patient: str = "patient-1", doctor: str = "doctor-user-1") -> AppointmentBooked:
    start = datetime.now(UTC) + starts_in
    return AppointmentBooked(
        appointment_id=str(uuid.uuid4()), patient_id=patient, doctor_id="doc-1",
        doctor_user_id=doctor, location_id=None, start=start,
        end=start + timedelta(minutes=30), timezone="Europe/Berlin", mode="online",
        status=status, booked_by=patient, booked_by_role="patient")


async def deliver(app: Any, event: AppointmentBooked, at: datetime | None = None) -> None:
    runtime = app.state.runtime
    await runtime.transact(lambda uow: service.appointment_changed(
        uow, event, at or datetime.now(UTC)))


async def published(app: Any, kind: str) -> list[dict[str, Any]]:
    docs = await app.state.runtime.db[OUTBOX].find({"type": kind}).to_list()
    return [d["envelope"]["data"] for d in docs]


async def frames_flow(peer: Peer, feed: str, at_least: int = 15) -> None:
    async def enough() -> bool:
        got = peer.received.get(feed)
        return bool(got and got.counts["video"] >= at_least and got.counts["audio"] > 0)

    await eventually(enough, within=30, interval=0.2,
                     message=f"frames of {feed} did not arrive: {peer.received}")
