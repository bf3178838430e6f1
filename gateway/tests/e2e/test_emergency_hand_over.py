"""An emergency to hand-over through the gateway (issue 14): who is coming and a live
ETA for the patient, the destination hospital chosen at transporting and its nurse
told in advance, every step in the audit log.

A verified hospital with an emergency department near Senate Square (its registered
position is what the emergency service ranks by), a nurse on that department, one
paramedic unit on duty; the patient raises, the unit accepts, drives nearer (each
position report moves the ETA on the patient's live stream), and takes the patient in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx

from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import User, audit_events, create_staff, ok, register_patient
from .test_emergency import SCENE, offered_task, on_duty, stand_down  # noqa: F401 (autouse)

MEILAHTI_NEAR = (60.1725, 24.9560)  # a made-up hospital position 400 m from the scene
START = (60.1790, 24.9520)  # about 1 km north of the scene
NEARER = (60.1740, 24.9520)


async def helsinki_hospital(api: httpx.AsyncClient, admin: User, nurse: User) -> str:
    hospital = ok(await api.post("/api/v1/hospitals", headers=admin.headers, json={
        "name": "Kruununhaka Emergency Hospital", "time_zone": "Europe/Helsinki",
        "services": ["emergency"],
        "address": {"lines": ["Maneesikatu 1"], "city": "Helsinki", "country": "FI"},
        "position": {"type": "Point", "coordinates": [MEILAHTI_NEAR[1], MEILAHTI_NEAR[0]]}}),
        201)
    department = ok(await api.post(f"/api/v1/hospitals/{hospital['id']}/departments",
                                   headers=admin.headers,
                                   json={"name": "Emergency", "services": ["emergency"]}), 201)
    ok(await api.post(f"/api/v1/hospitals/{hospital['id']}/staff", headers=admin.headers,
                      json={"user_id": nurse.id, "department_id": department["id"],
                            "staff_role": "nurse"}), 201)
    ok(await api.post(f"/api/v1/hospitals/{hospital['id']}/verify", headers=admin.headers))
    return str(hospital["id"])


@contextlib.asynccontextmanager
async def live(api: httpx.AsyncClient, who: User, emergency_id: str
               ) -> AsyncIterator[list[dict[str, Any]]]:
    """The emergency's live stream as ``who`` sees it: a list that fills while open."""
    seen: list[dict[str, Any]] = []

    async def listen() -> None:
        async with api.stream("GET", f"/api/v1/emergencies/{emergency_id}/stream",
                              headers=who.headers | {"Accept": "text/event-stream"},
                              timeout=httpx.Timeout(60)) as response:
            assert response.status_code == 200, await response.aread()
            event: dict[str, str] = {}
            async for line in response.aiter_lines():
                if not line:
                    if event.get("event") == "emergency":
                        seen.append(json.loads(event["data"]))
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    event[name] = value

    listener = asyncio.create_task(listen())
    try:
        await eventually(lambda: bool(seen), within=20, message="the stream never opened")
        yield seen
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def report(api: httpx.AsyncClient, crew: User, where: tuple[float, float]) -> None:
    ok(await api.put("/api/v1/paramedics/me/position", headers=crew.headers, json={
        "latitude": where[0], "longitude": where[1], "accuracy_m": 5.0,
        "reported_at": datetime.now(UTC).isoformat()}))


async def test_the_patient_follows_the_eta_and_the_hospital_is_told_in_advance(
        platform: RunningPlatform, admin: User, compliance: User) -> None:
    async with platform.client() as api:
        nurse = await create_staff(api, admin, ["nurse"], label="er-nurse")
        hospital_id = await helsinki_hospital(api, admin, nurse)
        crew = await on_duty(api, admin, "HKI 131", START)
        patient = await register_patient(api, "hand-over")
        eid = ok(await api.post("/api/v1/emergencies", headers=patient.headers, json={
            "position": {"latitude": SCENE[0], "longitude": SCENE[1], "accuracy_m": 10},
            "what_happened": "Fell down the stairs", "triage": {
                "conscious": True, "breathing_normally": True}}), 201)["id"]
        task = await offered_task(api, crew, eid)
        async with live(api, patient, eid) as seen:
            ok(await api.post(f"/api/v1/paramedics/me/tasks/{task['id']}/accept",
                              headers=crew.headers))
            await eventually(lambda: (seen[-1].get("assignment") or {}).get("accepted_at"),
                             within=20, message="the acceptance never reached the patient")
            ok(await api.post(f"/api/v1/emergencies/{eid}/status", headers=crew.headers,
                              json={"status": "en_route"}))
            first = seen[-1]["responder"]
            assert first["call_sign"] == "HKI 131", first
            await report(api, crew, NEARER)
            await eventually(
                lambda: (seen[-1].get("responder") or {}).get("travel_s", 1e9)
                < first["travel_s"], within=20, message="the ETA never moved on the stream")
        assert "Staff" not in json.dumps(seen[-1]["responder"])  # a call sign, no name
        status = f"/api/v1/emergencies/{eid}/status"
        ok(await api.post(status, headers=crew.headers, json={"status": "on_scene"}))
        moved = ok(await api.post(status, headers=crew.headers,
                                  json={"status": "transporting"}))
        assert moved["destination"]["hospital_id"] == hospital_id, moved
        for step in ("at_hospital", "closed"):
            ok(await api.post(status, headers=crew.headers, json={"status": step}))

        async def told() -> bool:
            types = {e["type"] for e in await audit_events(api, compliance,
                                                           subject=f"emergency/{eid}")}
            return {"paramedic.eta_updated", "emergency.destination_chosen"} <= types

        await eventually(told, within=30, message="the hand-over never reached the audit log")

        async def nurse_notified() -> bool:
            feed = ok(await api.get("/api/v1/notifications/feed", headers=nurse.headers))
            items = feed["items"] if isinstance(feed, dict) else feed
            return any(i.get("template") == "emergency_inbound" for i in items)

        await eventually(nurse_notified, within=30, message="the nurse was never told")
