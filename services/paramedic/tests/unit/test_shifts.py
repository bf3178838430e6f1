"""Shifts read with the shared schedule computation (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from healthflow.paramedic.shifts import on_shift, problems

HELSINKI = "Europe/Helsinki"
MONDAY_DAY = [{"day": 1, "start": 7 * 60, "end": 19 * 60}]  # Mon 07:00–19:00 local


def test_a_unit_is_on_shift_inside_its_local_hours_only() -> None:
    # Monday 2 December 2024; Helsinki is UTC+2 in winter.
    assert on_shift(MONDAY_DAY, HELSINKI, datetime(2024, 12, 2, 5, 0, tzinfo=UTC))
    assert on_shift(MONDAY_DAY, HELSINKI, datetime(2024, 12, 2, 16, 59, 59, tzinfo=UTC))
    assert not on_shift(MONDAY_DAY, HELSINKI, datetime(2024, 12, 2, 4, 59, tzinfo=UTC))
    assert not on_shift(MONDAY_DAY, HELSINKI, datetime(2024, 12, 2, 17, 0, tzinfo=UTC))
    assert not on_shift(MONDAY_DAY, HELSINKI, datetime(2024, 12, 3, 10, 0, tzinfo=UTC))


def test_summer_time_moves_the_shift_in_utc_and_no_shifts_means_on_call() -> None:
    # Monday 3 June 2024: UTC+3, so 07:00 local is 04:00 UTC.
    assert on_shift(MONDAY_DAY, HELSINKI, datetime(2024, 6, 3, 4, 0, tzinfo=UTC))
    assert not on_shift(MONDAY_DAY, HELSINKI, datetime(2024, 6, 3, 16, 0, tzinfo=UTC))
    assert on_shift([], HELSINKI, datetime(2024, 6, 3, 23, 0, tzinfo=UTC))


def test_a_night_shift_is_two_entries_and_overlaps_are_problems() -> None:
    night = [{"day": 5, "start": 22 * 60, "end": 1440}, {"day": 6, "start": 0, "end": 360}]
    saturday_2am = datetime(2024, 12, 7, 0, 0, tzinfo=UTC)  # 02:00 local
    assert on_shift(night, HELSINKI, saturday_2am)
    now = datetime(2024, 12, 1, tzinfo=UTC)
    assert problems(night, HELSINKI, now) == []
    overlapping = [*MONDAY_DAY, {"day": 1, "start": 18 * 60, "end": 20 * 60}]
    assert [p["location"] for p in problems(overlapping, HELSINKI, now)] == ["weekly.1"]
    off_grid = [{"day": 2, "start": 7 * 60 + 10, "end": 19 * 60}]
    assert problems(off_grid, HELSINKI, now)
