"""A unit busy with an X-ray task and a P1 (issue 14): a P1 takes the nearest unit by
road even when it is taking a radiograph — the X-ray task ends ``preempted`` (published,
so on the dispatchers' X-ray queue and in the audit log) and its order waits for the
next radiography-qualified unit; lower priorities never take a unit off an X-ray task."""

from __future__ import annotations

import uuid

from healthflow.devkit.testing import eventually

from .conftest import HELSINKI, Paramedics, offset
from .test_xray_tasks import deliver, dispatcher, radiographer, unit_doc, xray_event


async def busy_with_xray(para: Paramedics) -> tuple[str, str, str]:
    """A paramedic unit with radiography next to HELSINKI that accepted an X-ray task:
    (unit, order, task)."""
    rad = await radiographer(para, north_m=100)
    order = str(uuid.uuid4())
    await deliver(para, xray_event("xray.requested", order))
    await eventually(lambda: para.outbox("paramedic.xray_task_offered"),
                     message="the X-ray task was never offered")
    [task] = await para.tasks(rad)
    ok = await para.client.post(f"/api/v1/paramedics/me/tasks/{task['id']}/accept",
                                headers=para.me(rad))
    assert ok.status_code == 200, ok.text
    return rad, order, task["id"]


async def test_a_p1_takes_the_nearest_unit_off_its_x_ray_task(para: Paramedics) -> None:
    rad, order, xray_task = await busy_with_xray(para)
    far = await para.unit(*offset(*HELSINKI, north_m=6000))
    emergency = await para.raise_emergency(*HELSINKI, priority="P1")
    offers = [o for o in await para.outbox("paramedic.task_offered")
              if o["emergency_id"] == emergency]
    assert {o["unit_id"] for o in offers} == {rad, far}
    [ended] = await para.outbox("paramedic.xray_task_ended")
    assert (ended["task_id"], ended["reason"]) == (xray_task, "preempted")
    stored = await para.runtime.db["tasks"].find_one({"_id": xray_task})
    assert stored is not None and stored["status"] == "withdrawn"
    unit = await unit_doc(para, rad)
    assert unit["task_kind"] == "emergency" and unit["task_id"] != xray_task
    queue = await para.client.get("/api/v1/paramedics/xray-queue", headers=dispatcher(para))
    assert queue.status_code == 200, queue.text
    [waiting] = [q for q in queue.json() if q["order_id"] == order]
    assert waiting["status"] in ("pending", "assigning", "escalated") and waiting["task_id"] is None


async def test_a_lower_priority_leaves_the_x_ray_task_alone(para: Paramedics) -> None:
    rad, _, xray_task = await busy_with_xray(para)
    far = await para.unit(*offset(*HELSINKI, north_m=6000))
    emergency = await para.raise_emergency(*HELSINKI, priority="P2")
    [offer] = [o for o in await para.outbox("paramedic.task_offered")
               if o["emergency_id"] == emergency]
    assert offer["unit_id"] == far
    assert not await para.outbox("paramedic.xray_task_ended")
    assert (await unit_doc(para, rad))["task_id"] == xray_task
