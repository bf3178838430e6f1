"""Who is coming and when: the offer's estimate, then each ``paramedic.eta_updated``,
on ``GET /{id}`` (``responder``) and on the emergency's live stream (SSE)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .conftest import Emergencies, sse


async def eta(emg: Emergencies, eid: str, task: str, travel_s: float, age_s: float = 0.0
              ) -> None:
    await emg.answer("paramedic.eta_updated", eid, "para-1", task, call_sign="HKI 121",
                     travel_s=travel_s, by_road=True, distance_m=travel_s * 8,
                     reported_at=(datetime.now(UTC) - timedelta(seconds=age_s)).isoformat())


async def responder(emg: Emergencies, eid: str, who: str = "pat-1") -> Any:
    got = await emg.client.get(f"/api/v1/emergencies/{eid}",
                               headers=emg.as_(who, "patient"))
    assert got.status_code == 200, got.text
    return got.json()["responder"]


async def test_the_patient_sees_who_is_coming_and_the_eta_move(emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    assert await responder(emg, eid) is None
    task = await emg.offer(eid, "para-1")  # offer: travel_s 120, by straight line
    first = await responder(emg, eid)
    assert (first["unit_id"], first["accepted"], first["travel_s"]) == ("para-1", False, 120.0)
    await emg.answer("paramedic.task_accepted", eid, "para-1", task,
                     accepted_at=datetime.now(UTC).isoformat())
    await eta(emg, eid, task, 90.0)
    await eta(emg, eid, task, 200.0, age_s=10)  # an older report, delivered late
    now = await responder(emg, eid)
    assert (now["call_sign"], now["travel_s"], now["by_road"], now["accepted"]) == (
        "HKI 121", 90.0, True, True)
    arrive = datetime.fromisoformat(now["arrive_at"])
    assert arrive - datetime.fromisoformat(now["computed_at"]) == timedelta(seconds=90)
    await eta(emg, eid, "another-task", 10.0)  # not the emergency's task: ignored
    assert (await responder(emg, eid))["travel_s"] == 90.0
    crew = emg.as_("para-1", "paramedic")
    for step in ("en_route", "on_scene"):
        moved = await emg.client.post(f"/api/v1/emergencies/{eid}/status",
                                      json={"status": step}, headers=crew)
        assert moved.status_code == 200, moved.text
    assert await responder(emg, eid) is None  # arrived: no ETA any more
    other = await emg.client.get(f"/api/v1/emergencies/{eid}",
                                 headers=emg.as_("pat-2", "patient"))
    assert other.status_code == 404


async def test_the_live_stream_pushes_each_new_eta_to_the_patient(
        served: tuple[Emergencies, str]) -> None:
    emg, base = served
    eid = (await emg.raise_()).json()["id"]
    headers = emg.as_("pat-1", "patient")
    async with sse(base, f"/api/v1/emergencies/{eid}/stream", headers) as read_until:
        await read_until(lambda e: e["status"] == "raised")
        task = await emg.offer(eid, "para-1")
        await emg.answer("paramedic.task_accepted", eid, "para-1", task,
                         accepted_at=datetime.now(UTC).isoformat())
        await eta(emg, eid, task, 75.0)
        last = await read_until(lambda e: (e["responder"] or {}).get("travel_s") == 75.0)
    assert last["responder"]["call_sign"] == "HKI 121"
    stranger = await emg.client.get(f"/api/v1/emergencies/{eid}/stream",
                                    headers=emg.as_(f"pat-{uuid.uuid4().hex[:6]}", "patient"))
    assert stranger.status_code == 404


async def test_the_patient_a_clinician_named_sees_who_is_coming_too(emg: Emergencies) -> None:
    """Raised by a doctor for ``pat-7``: the patient follows it as if they had raised it
    (the responder and its ETA); another patient still gets 404."""
    eid = (await emg.raise_("doc-1", "doctor", patient_id="pat-7")).json()["id"]
    await emg.offer(eid, "para-1")
    seen = await responder(emg, eid, "pat-7")
    assert seen is not None and seen["unit_id"] == "para-1", seen
    other = await emg.client.get(f"/api/v1/emergencies/{eid}",
                                 headers=emg.as_("pat-8", "patient"))
    assert other.status_code == 404
