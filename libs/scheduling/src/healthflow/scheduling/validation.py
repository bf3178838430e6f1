"""Which schedules can be expanded unambiguously (the problems, not the HTTP error)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from healthflow.scheduling.clock import local_days, wall_to_utc
from healthflow.scheduling.model import MINUTES_PER_DAY, Schedule, WeeklyRule, format_minutes
from healthflow.scheduling.slots import Zones

OVERLAP_CHECK_DAYS = 371
"""Days over which rules in different time zones are checked for overlap (53 weeks)."""

Problem = dict[str, str]
"""``{"location": "weekly.<i>[.breaks.<j>]" | "leave.<i>", "message": …}``: the offending
entry as a path into the schedule as entered, and what is wrong, in English."""


def schedule_problems(schedule: Schedule, zones: Zones, *, now: datetime) -> list[Problem]:
    """Everything that stops ``schedule`` from being expanded unambiguously (``[]``: none).

    Rules: every rule's location has a zone in ``zones``; ``0 ≤ start < end ≤ 1440``;
    ``end − start`` and every break's offsets from ``start`` are multiples of
    ``slot_minutes`` (so a break never cuts a slot and the grid is the same on both
    sides of it); breaks lie inside their rule and do not overlap; no two rules overlap
    in real time (on the wall clock for rules sharing a zone, and over the next 53
    weeks from aware ``now`` across zones); leave ranges are ordered.
    """
    problems: list[Problem] = []
    for i, rule in enumerate(schedule.rules):
        problems += _rule_problems(f"weekly.{i}", rule, schedule.slot_minutes, zones)
    for i, leave in enumerate(schedule.leave):
        if leave.end < leave.start:
            problems.append({"location": f"leave.{i}",
                             "message": "end_date is before start_date"})
    if not problems:
        problems += _overlaps(schedule.rules, zones, now=now)
    return problems


def _rule_problems(where: str, rule: WeeklyRule, step: int, zones: Zones) -> list[Problem]:
    problems: list[Problem] = []
    if rule.location not in zones:
        problems.append({"location": f"{where}.location",
                         "message": f"{rule.location} has no known time zone"})
    if not (0 <= rule.start < rule.end <= MINUTES_PER_DAY):
        problems.append({"location": where, "message": "start must be before end, same day"})
        return problems
    if (rule.end - rule.start) % step:
        problems.append({
            "location": where,
            "message": f"the window {format_minutes(rule.start)}–{format_minutes(rule.end)}"
                       f" is not a whole number of {step}-minute slots",
        })
    previous_end = rule.start
    for j, (b_start, b_end) in enumerate(sorted(rule.breaks)):
        b_where = f"{where}.breaks.{j}"
        if not (rule.start <= b_start < b_end <= rule.end):
            problems.append({"location": b_where,
                             "message": "a break must lie inside its rule's window"})
        elif b_start < previous_end:
            problems.append({"location": b_where, "message": "breaks overlap"})
        elif (b_start - rule.start) % step or (b_end - rule.start) % step:
            problems.append({"location": b_where,
                             "message": f"a break must align to the {step}-minute slot grid"})
        previous_end = max(previous_end, b_end)
    return problems


def _overlaps(rules: Sequence[WeeklyRule], zones: Zones, *, now: datetime) -> list[Problem]:
    reported: dict[tuple[int, int], Problem] = {}

    def report(i: int, j: int) -> None:
        a = rules[i]
        reported.setdefault((i, j), {
            "location": f"weekly.{j}",
            "message": f"overlaps weekly.{i} (day {a.day} {format_minutes(a.start)}–"
                       f"{format_minutes(a.end)} at {a.location})",
        })

    for i, a in enumerate(rules):
        for j in range(i + 1, len(rules)):
            b = rules[j]
            if zones[a.location] == zones[b.location] and a.day == b.day and (
                a.start < b.end and b.start < a.end
            ):
                report(i, j)
    if len({str(zones[r.location]) for r in rules}) > 1:
        intervals: list[tuple[datetime, datetime, int]] = []
        start = now.astimezone(UTC)
        end = start + timedelta(days=OVERLAP_CHECK_DAYS)
        for index, rule in enumerate(rules):
            zone = zones[rule.location]
            intervals += [(wall_to_utc(day, rule.start, zone), wall_to_utc(day, rule.end, zone),
                           index)
                          for day in local_days(start, end, zone) if day.isoweekday() == rule.day]
        intervals.sort()
        for k in range(1, len(intervals)):
            # any earlier interval still open at this one's start overlaps it
            s, _, idx = intervals[k]
            for m in range(k - 1, -1, -1):
                ps, pe, pidx = intervals[m]
                if pe > s and pidx != idx:
                    report(min(pidx, idx), max(pidx, idx))
                if s - ps > timedelta(days=1):
                    break
    return list(reported.values())
