"""The order of waiting work, and waking it when a unit becomes available.

Work waits as ``pending`` assignments (the :mod:`.assigner` takes them one at a time)
or ``escalated`` ones (no unit was free; a job makes them ``pending`` again every
``ESCALATION_RETRY_S``). When units are scarce the order decides who gets the next
one, so it is clinical, not first come: emergencies before X-ray orders, then
priority P1 first (the triage classes of ``emergency.domain``), then the oldest
(:data:`WAITING_ORDER`). A unit that becomes available — freed from a task, or set
``available`` by its crew — does not wait for those retries: the escalated
emergencies it could serve (within ``SEARCH_RADIUS_M`` of its position; not for a
radiographer's unit) are made ``pending`` at once (:func:`unit_available`), and the
assigner takes the highest priority first.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING

from healthflow.common.mongo import Document
from healthflow.paramedic import store
from healthflow.paramedic.domain import haversine_m

WAITING_ORDER = [("kind", ASCENDING), ("priority", ASCENDING), ("created_at", ASCENDING)]
"""Emergencies (no ``kind``, which sorts before ``"xray"``) before X-ray orders, then
``P1`` … ``P4``, then the oldest (``created_at``, not the last retry's ``updated_at``)."""


async def next_pending(db: store.Db) -> Document | None:
    """The ``pending`` assignment to offer next, in :data:`WAITING_ORDER`."""
    return await db[store.ASSIGNMENTS].find_one({"status": "pending"}, sort=WAITING_ORDER)


async def unit_available(db: store.Db, session: store.Session, unit_id: str,
                         radius_m: float, now: datetime) -> list[str]:
    """The unit ``unit_id`` is available again: make the escalated emergencies within
    ``radius_m`` metres (great circle) of its position ``pending`` now, every unit
    askable again (as their retry would); returns their assignment ids, highest
    priority first. Nothing for a unit without a position or one that takes no
    emergencies (a radiographer's)."""
    unit = await store.get_unit(db, unit_id, session=session)
    if unit is None or not unit.get("location") or unit.get("takes_emergencies") is False:
        return []
    lon, lat = unit["location"]["coordinates"]
    waiting = await db[store.ASSIGNMENTS].find(
        {"status": "escalated", "kind": None, "location": {"$ne": None}},
        {"location": 1}, session=session).sort(WAITING_ORDER).to_list(500)
    near = [w["_id"] for w in waiting
            if haversine_m(lat, lon, w["location"]["coordinates"][1],
                           w["location"]["coordinates"][0]) <= radius_m]
    if near:
        await db[store.ASSIGNMENTS].update_many(
            {"_id": {"$in": near}, "status": "escalated"},
            {"$set": {"status": "pending", "tried": [], "updated_at": now}},
            session=session)
    return near
