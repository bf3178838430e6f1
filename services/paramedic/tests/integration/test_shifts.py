"""Shifts: a unit off shift is not assignable (automatically or by hand); bad shifts
are refused as problems and write nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from .conftest import HELSINKI, Paramedics, offset
from .test_dispatch import assign
from .test_units import problem

PROFILE = {"call_sign": "HKI 301", "vehicle": "Mercedes Sprinter",
           "qualifications": ["advanced_life_support"],
           "base": {"name": "Helsinki station 1", "latitude": 60.17, "longitude": 24.93}}


def today() -> int:
    return datetime.now(UTC).astimezone(ZoneInfo("Europe/Helsinki")).isoweekday()


async def with_shifts(para: Paramedics, unit: str, shifts: list[dict[str, Any]]) -> Any:
    return await para.client.put("/api/v1/paramedics/me", headers=para.me(unit),
                                 json=PROFILE | {"shifts": shifts})


async def test_an_off_shift_unit_is_passed_over(para: Paramedics) -> None:
    other_day = today() % 7 + 1
    near = await para.unit(*offset(*HELSINKI, north_m=100))
    put = await with_shifts(para, near, [{"day": other_day, "start": "00:00", "end": "24:00"}])
    assert put.status_code == 200, put.text
    assert (put.json()["on_shift"], put.json()["assignable"]) == (False, False)
    assert put.json()["shifts"] == [{"day": other_day, "start": "00:00", "end": "24:00"}]
    far = await para.unit(*offset(*HELSINKI, north_m=900))
    put = await with_shifts(para, far, [{"day": today(), "start": "00:00", "end": "24:00"}])
    assert put.json()["on_shift"] is True and put.json()["assignable"] is True
    emergency = await para.raise_emergency(*HELSINKI)
    [offered] = await para.outbox("paramedic.task_offered")
    assert offered["unit_id"] == far
    spare = await para.unit(*offset(*HELSINKI, north_m=50))
    await with_shifts(para, spare, [{"day": other_day, "start": "08:00", "end": "16:00"}])
    problem(await assign(para, emergency, spare), 409, "unit-not-assignable")


async def test_bad_shifts_are_refused_and_write_nothing(para: Paramedics) -> None:
    unit = await para.unit(*HELSINKI)
    for bad, where in (
            ([{"day": 1, "start": "07:00", "end": "19:00"},
              {"day": 1, "start": "18:00", "end": "20:00"}], "body.shifts.1"),
            ([{"day": 2, "start": "19:00", "end": "07:00"}], "body.shifts.0"),
            ([{"day": 2, "start": "07:10", "end": "19:00"}], "body.shifts.0")):
        body = problem(await with_shifts(para, unit, bad), 422)
        assert body["errors"][0]["location"].startswith(where), body
    problem(await with_shifts(para, unit, [{"day": 8, "start": "07:00", "end": "19:00"}]), 422)
    problem(await with_shifts(para, unit, [{"day": 1, "start": "7:00", "end": "19:00"}]), 422)
    problem(await para.client.put("/api/v1/paramedics/me", headers=para.me(unit),
                                  json=PROFILE | {"time_zone": "Mars/Olympus"}), 422)
    doc = await para.runtime.db["units"].find_one({"_id": unit})
    assert doc is not None and not doc.get("shifts")
