"""X-ray tasks through the gateway (issues 12 and 14): a doctor orders a chest X-ray in
an encounter; the paramedic service turns ``xray.requested`` into a task for the
radiography-qualified unit, pushed on its open task stream with what the crew needs
(never the clinical question); the crew accepts; the doctor cancels the order and the
cancellation reaches the crew on the same stream, freeing the unit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import User, create_staff, ok
from .test_emergency import ON_DUTY, stand_down, task_stream  # noqa: F401  (fixture)
from .test_records import checked_in_appointment
from .test_xray import order_in_encounter


async def radiography_unit(api: Any, admin: User) -> User:
    crew = await create_staff(api, admin, ["paramedic"], label="para-rad")
    ON_DUTY.append(crew)
    ok(await api.put("/api/v1/paramedics/me", headers=crew.headers, json={
        "call_sign": "HKI RAD1", "vehicle": "Mobile X-ray van",
        "qualifications": ["basic_life_support", "radiography"],
        "base": {"name": "Meilahti hospital", "latitude": 60.1899, "longitude": 24.9055}}))
    ok(await api.put("/api/v1/paramedics/me/status", headers=crew.headers,
                     json={"status": "available"}))
    ok(await api.put("/api/v1/paramedics/me/position", headers=crew.headers, json={
        "latitude": 60.1899, "longitude": 24.9055, "accuracy_m": 6.0,
        "reported_at": datetime.now(UTC).isoformat()}))
    return crew


async def test_an_ordered_x_ray_becomes_a_task_on_the_radiographers_stream(
        platform: RunningPlatform, admin: User) -> None:
    async with platform.client() as api:
        patient, doctor, _ = await checked_in_appointment(api, admin)
        crew = await radiography_unit(api, admin)
        async with task_stream(api, crew) as pushed:
            order = await order_in_encounter(api, doctor, patient)
            mine: dict[str, Any] = {}

            async def offered() -> bool:
                nonlocal mine
                for task in list(pushed):
                    if task["kind"] != "xray" or task["status"] != "offered":
                        continue
                    if task["order_id"] == order["id"]:
                        mine = task
                        return True
                    # an order queued by an earlier test on the shared platform: not ours
                    await api.post(f"/api/v1/paramedics/me/tasks/{task['id']}/decline",
                                   headers=crew.headers)
                return False

            await eventually(offered, within=60,
                             message="the X-ray task was never pushed on the stream")
            assert (mine["body_part"], mine["view"], mine["priority"]) == (
                "CHEST", "PA", "urgent")
            assert mine["accession_number"] == order["accession_number"]
            assert "pneumonia" not in str(mine).lower() and "cough" not in str(mine).lower()
            accepted = ok(await api.post(f"/api/v1/paramedics/me/tasks/{mine['id']}/accept",
                                         headers=crew.headers))
            assert accepted["status"] == "accepted"
            ok(await api.post(f"/api/v1/imaging/orders/{order['id']}/cancel",
                              headers=doctor.headers, json={}))

            def cancelled() -> bool:
                return any(t["id"] == mine["id"] and t["status"] == "cancelled"
                           for t in pushed)

            await eventually(cancelled, within=30,
                             message="the cancelled order was not pushed to the crew")
        unit = ok(await api.get("/api/v1/paramedics/me", headers=crew.headers))
        assert (unit["status"], unit["task_id"]) == ("available", None)
