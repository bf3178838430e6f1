"""Units: profile, duty status, positions (range, age, order) — against SecantusDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from .conftest import HELSINKI, Paramedics

PROBLEM = "application/problem+json"


def problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    if slug is not None:
        assert body["type"].endswith("/" + slug), body
    return body


def position(lat: float = 60.17, lon: float = 24.94, *, age_s: float = 0.0,
             **over: Any) -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(seconds=age_s)
    return {"latitude": lat, "longitude": lon, "accuracy_m": 5.0,
            "reported_at": at.isoformat()} | over


async def test_a_unit_reports_positions_and_becomes_assignable(para: Paramedics) -> None:
    unit = await para.unit(*HELSINKI)
    me = await para.client.get("/api/v1/paramedics/me", headers=para.me(unit))
    body = me.json()
    assert body["status"] == "available" and body["assignable"] is True, body
    assert body["position"]["latitude"] == HELSINKI[0]
    doc = await para.runtime.db["units"].find_one({"_id": unit})
    assert doc is not None
    assert doc["location"] == {"type": "Point", "coordinates": [HELSINKI[1], HELSINKI[0]]}

    # An older report arriving late does not move the unit back.
    late = await para.client.put("/api/v1/paramedics/me/position", headers=para.me(unit),
                                 json=position(61.0, 25.0, age_s=30))
    assert late.status_code == 200 and late.json()["position"]["latitude"] == HELSINKI[0]

    off = await para.client.put("/api/v1/paramedics/me/status", headers=para.me(unit),
                                json={"status": "off_duty"})
    assert off.json()["assignable"] is False


async def test_bad_positions_are_refused_with_problems(para: Paramedics) -> None:
    unit = await para.unit(*HELSINKI)
    me = para.me(unit)
    url = "/api/v1/paramedics/me/position"
    for bad in (position(91.0), position(lon=-180.5), position(accuracy_m=0),
                position(reported_at="2026-11-30T12:00:00")):  # no offset: not UTC-aware
        problem(await para.client.put(url, headers=me, json=bad), 422)
    problem(await para.client.put(url, headers=me, json=position(age_s=121)), 422,
            "stale-position")
    problem(await para.client.put(url, headers=me, json=position(age_s=-60)), 422,
            "stale-position")
    problem(await para.client.put(url, headers=para.me("para-unknown"), json=position()),
            404, "unit-not-found")
    problem(await para.client.put("/api/v1/paramedics/me/status", headers=me,
                                  json={"status": "on_scene"}), 422)
    problem(await para.client.put(url, json=position()), 401)
    problem(await para.client.put(url, headers=para.tokens.headers("pat", ("patient",)),
                                  json=position()), 403)


async def test_dispatchers_see_every_unit_and_stale_ones_are_not_assignable(
        replicas: Any) -> None:
    [para] = await replicas(1, position_max_age_s=2.0)
    fresh = await para.unit(*HELSINKI)
    stale = await para.unit(*HELSINKI, age_s=1.5)
    import asyncio

    await asyncio.sleep(0.6)  # the second unit's position is now older than 2 s
    listing = await para.client.get("/api/v1/paramedics",
                                    headers=para.tokens.headers("disp", ("dispatcher",)))
    assert listing.status_code == 200, listing.text
    by_id = {u["id"]: u for u in listing.json()}
    assert by_id[fresh]["assignable"] is True and by_id[stale]["assignable"] is False
    problem(await para.client.get("/api/v1/paramedics", headers=para.me(fresh)), 403)


async def test_a_report_from_a_clock_ahead_is_stored_at_now(para: Paramedics) -> None:
    """Up to 30 s ahead is accepted (phone clocks drift) but stored as the server's now:
    kept as given it would outrank every true report until that time came."""
    unit = await para.unit(*HELSINKI)
    url, me = "/api/v1/paramedics/me/position", para.me(unit)
    before = datetime.now(UTC)
    ahead = await para.client.put(url, headers=me, json=position(61.0, 25.0, age_s=-25))
    assert ahead.status_code == 200, ahead.text
    doc = await para.runtime.db["units"].find_one({"_id": unit})
    assert doc is not None and before <= doc["position_at"] <= datetime.now(UTC)
    moved = await para.client.put(url, headers=me, json=position(60.5, 25.0, age_s=-1))
    assert moved.status_code == 200 and moved.json()["position"]["latitude"] == 60.5
