"""The unit on its way publishes its ETA to the incident from its position reports
(``paramedic.eta_updated``: by road on the Helsinki graph, else the straight line),
only after accepting and only until on scene; never its position; and only when the
ETA changed enough or the last one is old enough (each stays in the audit log)."""

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
    [para] = await replicas(1, road_graph="helsinki", eta_change_s=0, eta_change_ratio=0)
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


async def test_eta_events_are_throttled_by_change_and_by_interval(replicas: Any) -> None:
    """Off the graph (straight line, × 1.4 at 40 km/h): 0.126 s a metre. Published when
    the ETA moves by 30 s or 20 %, whichever is larger; else once per 30 s of report
    time. The unit's position is stored from every report all the same."""
    [para] = await replicas(1, eta_change_s=30, eta_change_ratio=0.2, eta_interval_s=30)
    unit = await para.unit(*offset(*HELSINKI, north_m=3_000), age_s=105)
    await para.raise_emergency(*HELSINKI)
    await accept(para, unit)
    for north_m, age_s in [(2_000, 100),  # 252 s, the first: published
                           (1_700, 95),  # −38 s, under 20 % of 252: held
                           (1_500, 90),  # −63 s from the last published: published
                           (1_450, 85),  # −6 s, 5 s later: held
                           (1_450, 60),  # 30 s after the last published: published
                           (1_000, 59),  # −57 s, over 20 % of 183: published
                           (1_000, 58)]:  # unchanged, 1 s later: held
        await report(para, unit, offset(*HELSINKI, north_m=north_m), age_s=age_s)
    etas = await para.outbox("paramedic.eta_updated")
    assert [round(e["distance_m"], -1) for e in etas] == [2_000, 1_500, 1_450, 1_000]
    me = (await para.client.get("/api/v1/paramedics/me", headers=para.me(unit))).json()
    assert abs(me["position"]["latitude"] - offset(*HELSINKI, north_m=1_000)[0]) < 1e-6
    assert (datetime.now(UTC) - datetime.fromisoformat(me["position"]["reported_at"])
            ).total_seconds() < 65
