"""One-time start-up migrations against the real server: applied once, recorded, retried
after a failure."""

from __future__ import annotations

import pytest

from healthflow.common import mongo
from healthflow.common.migrations import MIGRATIONS, apply_once


@pytest.fixture
def db(mongodb_url, unique_name):
    return mongo.get_database(mongodb_url, f"migrate_{unique_name}")


async def test_a_migration_runs_once_and_is_recorded(db) -> None:
    await db.items.insert_many([{"_id": "a"}, {"_id": "b", "tag": "kept"}])
    runs: list[int] = []

    async def tag() -> int:
        runs.append(1)
        result = await db.items.update_many({"tag": {"$exists": False}}, {"$set": {"tag": "x"}})
        return result.modified_count

    assert await apply_once(db, "items.tag", tag) == 1
    assert await apply_once(db, "items.tag", tag) is None  # the next start: no scan
    assert len(runs) == 1
    record = await db[MIGRATIONS].find_one({"_id": "items.tag"})
    assert record is not None and record["changed"] == 1
    assert record["applied_at"] is not None


async def test_a_failed_migration_is_not_recorded_and_runs_again(db) -> None:
    async def broken() -> int:
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        await apply_once(db, "items.broken", broken)
    assert await db[MIGRATIONS].count_documents({}) == 0

    async def fixed() -> int:
        return 0

    assert await apply_once(db, "items.broken", fixed) == 0
