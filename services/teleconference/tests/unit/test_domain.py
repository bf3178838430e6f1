"""The teleconference rules alone: the window, who is admitted on joining, TURN
credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from healthflow.teleconference.domain import (
    ParticipantState,
    Removed,
    Role,
    RoomClosed,
    RoomNotOpen,
    Window,
    check_status,
    link_quality,
    state_on_join,
    turn_credentials,
)

START = datetime(2026, 3, 29, 0, 45, tzinfo=UTC)  # the night Europe moves its clocks


def test_the_window_opens_before_the_start_and_closes_after_the_end() -> None:
    window = Window.of(START, START + timedelta(minutes=30), timedelta(minutes=15),
                       timedelta(minutes=30))
    with pytest.raises(RoomNotOpen) as early:
        window.check(START - timedelta(minutes=15, seconds=1))
    assert early.value.extensions["opens_at"] == "2026-03-29T00:30:00+00:00"
    window.check(START - timedelta(minutes=15))
    window.check(START + timedelta(minutes=59, seconds=59))
    with pytest.raises(RoomClosed):
        window.check(START + timedelta(hours=1))


def test_the_patient_waits_the_doctor_and_anyone_admitted_before_do_not() -> None:
    assert state_on_join(Role.PATIENT, None, False) is ParticipantState.WAITING
    assert state_on_join(Role.PATIENT, "left", False) is ParticipantState.WAITING
    assert state_on_join(Role.DOCTOR, None, False) is ParticipantState.ADMITTED
    # a dropped network or a reload: back in without a second admission
    assert state_on_join(Role.PATIENT, "admitted", True) is ParticipantState.ADMITTED
    assert state_on_join(Role.PATIENT, "left", True) is ParticipantState.ADMITTED
    with pytest.raises(Removed):
        state_on_join(Role.PATIENT, "removed", True)


def test_ended_and_cancelled_rooms_take_no_one() -> None:
    check_status("scheduled")
    check_status("in_progress")
    for status in ("ended", "cancelled"):
        with pytest.raises(RoomClosed):
            check_status(status)


def test_turn_credentials_follow_the_turn_rest_convention_coturn_checks() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    username, credential, expires = turn_credentials("s3cret", "user-7", now,
                                                     timedelta(minutes=10))
    assert expires == now + timedelta(minutes=10)
    assert username == f"{int(expires.timestamp())}:user-7"
    # coturn (use-auth-secret): base64 of HMAC-SHA1 over the username, keyed by the secret
    expected = hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(credential) == expected


def test_link_quality_reads_janus_statistics_without_addresses() -> None:
    """A trimmed ``handle_info`` as Janus 1.1 answers it for a publisher."""
    info = {"webrtc": {
        "ice": {"selected-pair": "192.0.2.2:20372 [host,udp] <-> 192.0.2.2:33888"},
        "media": {
            "1": {"type": "audio", "rtcp": {"main": {"rtt": 12, "lost": 0,
                                                     "jitter-local": 3,
                                                     "in-link-quality": 100}},
                  "stats": {"in": {"packets": 500, "bytes_lastsec": 4000}}},
            "0": {"type": "video", "rtcp": {"main": {"rtt": 12, "lost": 10,
                                                     "jitter-local": 90,
                                                     "in-link-quality": 97}},
                  "stats": {"in": {"packets": 990, "bytes_lastsec": 62500}}},
        }}}
    video, audio = link_quality(info)
    assert video == {"kind": "video", "bitrate_kbps": 500.0, "packets": 990, "lost": 10,
                     "loss_percent": 1.0, "rtt_ms": 12, "jitter": 90, "link_quality": 97}
    assert audio["kind"] == "audio" and audio["loss_percent"] == 0.0
    assert "192.0.2.2" not in str(link_quality(info))
    assert link_quality({}) == []
