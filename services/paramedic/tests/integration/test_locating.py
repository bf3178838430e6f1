"""``emergency.located``: an emergency raised from an address only waits escalated
(``no_position``, no retry) until a dispatcher gives it a position; then it is
assigned like a raised one (a P1: both units)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from healthflow.common.events.envelope import CloudEvent
from healthflow.devkit.testing import eventually

from .conftest import HELSINKI, Paramedics, offset


async def located(para: Paramedics, emergency_id: str, lat: float, lon: float,
                  at: datetime | None = None) -> None:
    at = at or datetime.now(UTC)
    await para.runtime.transport.publish(CloudEvent(
        id=str(uuid.uuid4()), source="/healthflow/emergency", type="emergency.located",
        time=at, data={"emergency_id": emergency_id, "latitude": lat, "longitude": lon,
                       "accuracy_m": 30.0, "located_by": "disp-1",
                       "located_at": at.isoformat()}))


async def assignment(para: Paramedics, assignment_id: str) -> dict[str, Any]:
    doc = await para.runtime.db["assignments"].find_one({"_id": assignment_id})
    assert doc is not None
    return doc


async def test_an_address_only_p1_gets_both_units_once_located(replicas: Any) -> None:
    [para] = await replicas(1, escalation_retry_s=600.0, timer_interval_s=5.0)
    near = await para.unit(*offset(*HELSINKI, north_m=400))
    other = await para.unit(*offset(*HELSINKI, east_m=900))
    emergency = await para.raise_emergency(None, None, priority="P1")
    assert (await assignment(para, emergency))["status"] == "escalated"
    assert (await assignment(para, f"{emergency}:2"))["status"] == "ended"
    assert not await para.tasks(near) and not await para.tasks(other)
    manual = await para.client.put(
        f"/api/v1/paramedics/assignments/{emergency}",
        json={"unit_id": near, "reason": "escalated"},
        headers=para.tokens.headers("disp-1", ("dispatcher",)))
    assert manual.status_code == 404, manual.text  # nowhere to send it yet
    await located(para, emergency, *HELSINKI)

    async def both() -> bool:
        return all([await para.tasks(near), await para.tasks(other)])

    await eventually(both, within=4, message="the located P1 was not offered to both units")
    [task] = await para.tasks(near)
    assert task["emergency_id"] == emergency and task["status"] == "offered"
    assert (task["latitude"], task["longitude"]) == HELSINKI
    older = datetime.now(UTC) - timedelta(minutes=5)
    await located(para, emergency, 61.0, 25.0, at=older)  # late and older: ignored
    coordinates = (await assignment(para, emergency))["location"]["coordinates"]
    assert coordinates == [HELSINKI[1], HELSINKI[0]]
