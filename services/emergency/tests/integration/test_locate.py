"""``PUT /{id}/position``: a dispatcher gives an emergency raised from an address its
position, published as ``emergency.located`` (the paramedic service then assigns it)."""

from __future__ import annotations

from typing import Any

from .conftest import Emergencies

PROBLEM = "application/problem+json"
FIX = {"latitude": 60.1699, "longitude": 24.9384, "accuracy_m": 40.0}


def problem(response: Any, status: int, slug: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    if slug is not None:
        assert response.json()["type"].endswith("/" + slug), response.text


async def test_a_dispatcher_locates_an_emergency_raised_from_an_address(
        emg: Emergencies) -> None:
    raised = await emg.raise_("disp-1", "dispatcher", position=None,
                              address="Mannerheimintie 1, Helsinki",
                              caller_phone="+358401234567")
    eid, dispatcher = raised.json()["id"], emg.as_("disp-1", "dispatcher")
    url = f"/api/v1/emergencies/{eid}/position"
    problem(await emg.client.put(url, json=FIX, headers=emg.as_("pat-1", "patient")), 403)
    problem(await emg.client.put(url, json=FIX | {"latitude": 91}, headers=dispatcher), 422)
    problem(await emg.client.put(url, json={"latitude": 60.1}, headers=dispatcher), 422)
    problem(await emg.client.put("/api/v1/emergencies/nope/position", json=FIX,
                                 headers=dispatcher), 404, "emergency-not-found")
    assert await emg.outbox("emergency.located") == []  # no partial write
    located = await emg.client.put(url, json=FIX, headers=dispatcher)
    assert located.status_code == 200, located.text
    assert located.json()["position"] == FIX and located.json()["status"] == "raised"
    [event] = await emg.outbox("emergency.located")
    data = event["data"]
    assert (data["emergency_id"], data["latitude"], data["longitude"], data["accuracy_m"],
            data["located_by"]) == (eid, 60.1699, 24.9384, 40.0, "disp-1")
    assert "address" not in data and "caller_phone" not in data  # stays here
    doc = await emg.runtime.db["emergencies"].find_one({"_id": eid})
    assert doc is not None and doc["location"]["coordinates"] == [24.9384, 60.1699]


async def test_no_position_change_once_the_crew_is_on_scene(emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    task = await emg.offer(eid, "para-1")
    await emg.answer("paramedic.task_accepted", eid, "para-1", task,
                     accepted_at="2026-12-01T05:00:00+00:00")
    for step in ("en_route", "on_scene"):
        moved = await emg.client.post(f"/api/v1/emergencies/{eid}/status",
                                      json={"status": step},
                                      headers=emg.as_("para-1", "paramedic"))
        assert moved.status_code == 200, moved.text
    problem(await emg.client.put(f"/api/v1/emergencies/{eid}/position", json=FIX,
                                 headers=emg.as_("disp-1", "dispatcher")),
            409, "cannot-locate")
