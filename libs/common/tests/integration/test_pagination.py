"""Keyset pagination against the real server: no repeats, no gaps, ties, both directions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from healthflow.common import mongo
from healthflow.common.errors import BadRequest
from healthflow.common.pagination import encode_cursor, keyset_page


@pytest.fixture
async def collection(mongodb_url, unique_name):
    coll = mongo.get_database(mongodb_url, f"page_{unique_name}")["items"]
    start = datetime(2026, 11, 1, tzinfo=UTC)
    # 25 items, sort keys with ties (5 per name, 3 per time) so the _id breaks them
    await coll.insert_many([
        {"_id": f"id{i:02d}", "name": f"n{i // 5}", "at": start + timedelta(hours=i // 3),
         "even": i % 2 == 0}
        for i in range(25)
    ])
    return coll


async def walk(collection, **kwargs) -> list[str]:
    seen, cursor = [], None
    for _ in range(20):
        docs, cursor = await keyset_page(collection, kwargs.pop("query", {}) or {},
                                         cursor=cursor, limit=7, **kwargs)
        seen += [d["_id"] for d in docs]
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end")


async def test_pages_cover_everything_once_in_order(collection):
    ids = await walk(collection, sort=["name", "_id"])
    assert ids == [f"id{i:02d}" for i in range(25)]


async def test_datetime_keys_and_descending_order(collection):
    ids = await walk(collection, sort=["at", "_id"], descending=True)
    assert ids == [f"id{i:02d}" for i in reversed(range(25))]


async def test_filters_are_kept_across_pages(collection):
    docs, cursor = await keyset_page(collection, {"even": True}, sort=["name", "_id"],
                                     cursor=None, limit=7)
    rest, end = await keyset_page(collection, {"even": True}, sort=["name", "_id"],
                                  cursor=cursor, limit=7)
    assert end is None
    assert [d["_id"] for d in docs + rest] == [f"id{i:02d}" for i in range(0, 25, 2)]


@pytest.mark.parametrize("cursor", [
    "not-base64!", encode_cursor({"k": "x"}), encode_cursor({"k": [1]}),
    encode_cursor({"k": [{"$where": "1"}, "id"]}), encode_cursor({"k": [{"$dt": "never"}, "x"]}),
])
async def test_foreign_cursors_are_400(collection, cursor):
    with pytest.raises(BadRequest):
        await keyset_page(collection, {}, sort=["name", "_id"], cursor=cursor, limit=5)
