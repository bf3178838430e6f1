"""The compliance queries' rules (categories, failed-login bursts), without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from healthflow.audit.domain import CATEGORIES, Failure, login_failure_bursts

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def _failures(key: str, seconds: list[int], first_seq: int = 0) -> list[Failure]:
    return [Failure(first_seq + i, T0 + timedelta(seconds=s), key)
            for i, s in enumerate(seconds)]


def test_a_run_with_short_pauses_is_one_burst_and_a_long_pause_splits_it() -> None:
    failures = _failures("u-1", [0, 60, 120, 200, 290, 2000, 2010])
    bursts = login_failure_bursts(failures, threshold=5, gap_seconds=100)
    assert [(b.key, b.count, b.seqs) for b in bursts] == [("u-1", 5, (0, 1, 2, 3, 4))]
    assert (bursts[0].first, bursts[0].last) == (T0, T0 + timedelta(seconds=290))
    # the pause equal to the gap still belongs to the burst; one second more splits it
    assert login_failure_bursts(_failures("u", [0, 100]), threshold=2, gap_seconds=100)
    assert not login_failure_bursts(_failures("u", [0, 101]), threshold=2, gap_seconds=100)


def test_bursts_are_per_key_in_time_order_whatever_the_input_order() -> None:
    mixed = _failures("u-2", [30, 10, 20], first_seq=10) + _failures("u-1", [0, 1, 2])
    bursts = login_failure_bursts(mixed, threshold=3, gap_seconds=60)
    assert [(b.key, b.seqs) for b in bursts] == [("u-1", (0, 1, 2)), ("u-2", (11, 12, 10))]
    assert login_failure_bursts(mixed, threshold=4, gap_seconds=60) == []
    assert login_failure_bursts([], threshold=2, gap_seconds=60) == []


def test_categories_name_the_events_officers_ask_for() -> None:
    assert {"user.role_changed", "staff.assigned"} <= CATEGORIES["privilege-change"]
    assert CATEGORIES["login-failure"] == {"auth.login_failed"}
    assert CATEGORIES["break-the-glass"] == {"record.emergency_access_granted"}
    assert "record.emergency_access_granted" in CATEGORIES["record-access"]
