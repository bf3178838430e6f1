"""The unit on its way publishes its ETA to the incident on each position report
(``paramedic.eta_updated``: by road on the Helsinki graph, else the straight line),
only after accepting and only until on scene; never its position."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from healthflow.devkit.testing import eventually

from .conftest import (
    HELSINKI,
    SENATE_SQUARE,
    STRAIGHT_FAR_ROAD_FAST,
    Paramedics,
    offset,
)


async def report(para: Paramedics, unit: str, at: tuple[float, float],
                 age_s: float = 0.0) -> None:
    moved = await para.client.put("/api/v1/paramedics/me/position", headers=para.me(unit),
                                  json={"latitude": at[0], "longitude": at[1],
                                        "accuracy_m": 5.0, "reported_at": (
                                            datetime.now(UTC) - timedelta(seconds=age_s)
                                        ).isoformat()})
    assert moved.status_code == 200, moved.text


async def accept(para: Paramedics, unit: str) -> dict[str, Any]:
    [task] = await para.tasks(unit)
    accepted = await para.client.post(f"/api/v1/paramedics/me/tasks/{task['id']}/accept",
                                      headers=para.me(unit))
    assert accepted.status_code == 200, accepted.text
    return task


async def test_position_reports_of_a_unit_on_its_way_publish_its_eta_by_road(
        replicas: Any) -> None:
    [para] = await replicas(1, road_graph="helsinki")
    roads = para.runtime.state["context"].roads
    await eventually(lambda: roads.graph is not None, within=30,
                     message="the road graph never loaded")
    unit = await para.unit(*offset(*SENATE_SQUARE, north_m=900))
    emergency = await para.raise_emergency(*SENATE_SQUARE)
    [offered] = await para.outbox("paramedic.task_offered")
    assert offered["call_sign"] == f"HKI {unit[-4:]}"
    await report(para, unit, offset(*SENATE_SQUARE, north_m=700))
    assert await para.outbox("paramedic.eta_updated") == []  # only offered, not accepted
    task = await accept(para, unit)
    await para.emergency_status(emergency, "en_route")
    await report(para, unit, offset(*SENATE_SQUARE, north_m=500))
    await report(para, unit, STRAIGHT_FAR_ROAD_FAST)
    await report(para, unit, offset(*SENATE_SQUARE, north_m=800), age_s=20)  # late: ignored
    etas = await para.outbox("paramedic.eta_updated")
    assert [e["task_id"] for e in etas] == [task["id"]] * 2
    assert all(e["by_road"] for e in etas) and etas[1]["travel_s"] < etas[0]["travel_s"]
    assert 260 < etas[1]["distance_m"] < 280 and etas[1]["call_sign"] == f"HKI {unit[-4:]}"
    assert not {"latitude", "longitude", "location"} & set(etas[0])
    await para.emergency_status(emergency, "on_scene")
    await report(para, unit, SENATE_SQUARE)
    assert len(await para.outbox("paramedic.eta_updated")) == 2


async def test_off_the_graph_the_eta_is_the_straight_line_estimate(
        para: Paramedics) -> None:
    unit = await para.unit(*offset(*HELSINKI, north_m=2_000))
    await para.raise_emergency(*HELSINKI)
    await accept(para, unit)
    await report(para, unit, offset(*HELSINKI, north_m=1_000))
    [eta] = await para.outbox("paramedic.eta_updated")
    assert eta["by_road"] is False and abs(eta["distance_m"] - 1_000) < 5
    assert abs(eta["travel_s"] - 1_000 * 1.4 / (40 / 3.6)) < 1  # roads.DETOUR at 40 km/h
