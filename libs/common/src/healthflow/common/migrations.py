"""One-time data migrations a service runs at start.

A migration carries documents stored before a field existed over to the new shape
(e.g. appointments booked before issue 16 get their ``hospital_ids``). Scanning for
``{"field": {"$exists": false}}`` at every start reads the whole collection each time
(no index answers it), so :func:`apply_once` records each migration done in the
service's ``migrations`` collection (``{_id: migration id, applied_at (aware UTC),
changed (documents changed)}``) and later starts cost one ``find_one``.

Migrations must be idempotent (conditional updates): two replicas starting together
may both run one, and a crash before it is recorded runs it again at the next start.
Documents written after the deploy already have the new shape, so once is enough.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.mongo import utcnow

log = logging.getLogger(__name__)

MIGRATIONS = "migrations"
"""The collection recording the migrations applied to the service's database."""


async def apply_once(db: AsyncDatabase[Any], migration_id: str,
                     migrate: Callable[[], Awaitable[int]]) -> int | None:
    """Run ``migrate`` unless ``migration_id`` is recorded as applied in ``db``.

    Returns how many documents it changed (``migrate``'s answer), or ``None`` when it
    had already been applied. Raises what ``migrate`` raises (nothing is recorded then,
    so the next start tries again).
    """
    if await db[MIGRATIONS].find_one({"_id": migration_id}, {"_id": 1}) is not None:
        return None
    changed = await migrate()
    await db[MIGRATIONS].update_one(
        {"_id": migration_id},
        {"$setOnInsert": {"applied_at": utcnow(), "changed": changed}}, upsert=True)
    log.info("data migration applied", extra={"migration": migration_id, "changed": changed})
    return changed
