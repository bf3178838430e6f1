"""The dispatchers' live board (SSE): the open emergencies first, then every raise and
change as it happens; dispatchers only."""

from __future__ import annotations

from datetime import UTC, datetime

from .conftest import Emergencies, sse


async def test_dispatchers_see_the_board_then_each_change_live(
        served: tuple[Emergencies, str]) -> None:
    emg, base = served
    before = (await emg.raise_("pat-a")).json()["id"]
    dispatcher = emg.as_("disp-1", "dispatcher")
    async with sse(base, "/api/v1/emergencies/stream", dispatcher) as read_until:
        assert (await read_until(lambda e: True))["id"] == before  # the board now
        urgent = (await emg.raise_("pat-b", triage={"conscious": False,
                                                     "breathing_normally": True})).json()
        raised = await read_until(lambda e: e["id"] == urgent["id"])
        assert raised["priority"] == "P1" and raised["status"] == "raised"
        await emg.deliver("paramedic.assignment_escalated", {
            "emergency_id": before, "reason": "no_unit_available", "attempts": 3,
            "escalated_at": datetime.now(UTC).isoformat()})
        flagged = await read_until(lambda e: e["id"] == before and e["escalated"])
        assert flagged["escalated"]["reason"] == "no_unit_available"
    refused = await emg.client.get("/api/v1/emergencies/stream",
                                   headers=emg.as_("pat-a", "patient"))
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
