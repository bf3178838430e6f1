"""Rules of the teleconference service (no I/O): when a room may be joined, who may join
it, how participants move, and the short-lived TURN credentials.

A room belongs to one online appointment (its ``_id`` is the appointment's id). Its
**window** runs from ``open_before`` before the appointment's start to ``close_after``
after its end (aware UTC); joins outside it are refused with the window in the answer.

Room status::

    scheduled ──(doctor admits the patient)──▶ in_progress ──(doctor ends, or the window
         │                                                    closes)──▶ ended
         └──(the appointment is cancelled)──▶ cancelled

Participant state (one per user and room)::

    waiting ──(admitted by the doctor)──▶ admitted ──(leaves)──▶ left ──(joins again)──▶ admitted
       │                                      └──(removed by the doctor)──▶ removed (for good)
       └──(leaves)──▶ left

The doctor is admitted on joining; an admitted participant who drops and joins again
is admitted at once (no second admission), a removed one never again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from healthflow.common.problems import Conflict, Forbidden, Problem


class RoomStatus(StrEnum):
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    ENDED = "ended"
    CANCELLED = "cancelled"


class ParticipantState(StrEnum):
    WAITING = "waiting"
    ADMITTED = "admitted"
    LEFT = "left"
    REMOVED = "removed"


class Role(StrEnum):
    """The participant's part in the consultation (FHIR ``Encounter.participant.type``
    would say ``PPRF`` for the doctor; the patient is the encounter's subject)."""

    PATIENT = "patient"
    DOCTOR = "doctor"
    GUEST = "guest"  # invited by the doctor through a single-use link


class GuestKind(StrEnum):
    """Who a guest is to the consultation."""

    INTERPRETER = "interpreter"
    FAMILY = "family"
    CLINICIAN = "clinician"  # a second clinician


class LinkSpent(Problem):
    """A guest link is single-use and lives until its room closes (RFC 9110 §15.5.11)."""

    status, title, slug = 410, "Guest Link Used Or Expired", "guest-link-spent"


class GuestLimit(Conflict):
    title, slug = "Guest Limit Reached", "guest-limit"


class RoomNotOpen(Conflict):
    title, slug = "Room Not Open", "room-not-open"


class RoomClosed(Conflict):
    title, slug = "Room Closed", "room-closed"


class NotAdmitted(Conflict):
    title, slug = "Not Admitted", "not-admitted"


class Removed(Forbidden):
    title, slug = "Removed From The Room", "participant-removed"


@dataclass(frozen=True)
class Window:
    """When a room may be joined: ``opens_at`` ≤ now < ``closes_at`` (aware UTC)."""

    opens_at: datetime
    closes_at: datetime

    @classmethod
    def of(cls, start: datetime, end: datetime, open_before: timedelta,
           close_after: timedelta) -> Window:
        return cls(start - open_before, end + close_after)

    def check(self, now: datetime) -> None:
        """
        Raises:
            RoomNotOpen: (409) ``now`` is before ``opens_at``; the answer names it.
            RoomClosed: (409) ``now`` is at or after ``closes_at``.
        """
        if now < self.opens_at:
            raise RoomNotOpen(f"the room opens at {self.opens_at.isoformat()}",
                              opens_at=self.opens_at.isoformat(),
                              closes_at=self.closes_at.isoformat())
        if now >= self.closes_at:
            raise RoomClosed(f"the room closed at {self.closes_at.isoformat()}",
                             opens_at=self.opens_at.isoformat(),
                             closes_at=self.closes_at.isoformat())


JOINABLE = frozenset({RoomStatus.SCHEDULED, RoomStatus.IN_PROGRESS})


def check_status(status: str) -> None:
    """
    Raises:
        RoomClosed: (409) the consultation was ended or its appointment cancelled.
    """
    if status not in JOINABLE:
        raise RoomClosed(f"the consultation is {status}")


def state_on_join(role: Role, previous: str | None, was_admitted: bool) -> ParticipantState:
    """The state a joining participant gets: the doctor, and anyone the doctor admitted
    before in this consultation (a dropped network, a reload, a leave and return), are
    admitted; the patient waits otherwise.

    Raises:
        Removed: (403) the doctor removed this participant.
    """
    if previous == ParticipantState.REMOVED:
        raise Removed("the doctor removed you from this consultation")
    if role is Role.DOCTOR or was_admitted:
        return ParticipantState.ADMITTED
    return ParticipantState.WAITING


def turn_credentials(secret: str, user_id: str, now: datetime, ttl: timedelta
                     ) -> tuple[str, str, datetime]:
    """Short-lived TURN credentials by the TURN REST API convention that coturn
    implements (``use-auth-secret``; draft-uberti-behave-turn-rest-00 §2.2):
    username ``<expiry unix seconds>:<user_id>``, password
    ``base64(HMAC-SHA1(secret, username))``. Returns ``(username, credential,
    expires_at)`` (aware UTC)."""
    expires_at = now + ttl
    username = f"{int(expires_at.timestamp())}:{user_id}"
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(mac).decode(), expires_at


def link_quality(info: dict[str, Any]) -> list[dict[str, Any]]:
    """What the doctor sees of one participant's connection, from the statistics Janus
    keeps for their publisher (admin API ``handle_info``, its ``webrtc.media``): per
    medium, ``kind`` audio | video, ``bitrate_kbps`` received in the last second
    (kbit/s), ``packets`` received, ``lost`` packets and ``loss_percent`` (RTCP, RFC
    3550 §6.4), ``rtt_ms`` round trip (ms), ``jitter`` (RTP timestamp units, RFC 3550
    §6.4.1) and Janus's ``link_quality`` (0–100). No addresses: a patient's IP address
    is personal data the doctor does not need."""
    found = []
    media = (info.get("webrtc") or {}).get("media") or {}
    for _, medium in sorted(media.items()):
        stats = (medium.get("stats") or {}).get("in") or {}
        rtcp = ((medium.get("rtcp") or {}).get("main")) or {}
        packets = int(stats.get("packets", 0))
        lost = int(rtcp.get("lost", 0))
        found.append({
            "kind": medium.get("type"),
            "bitrate_kbps": round(int(stats.get("bytes_lastsec", 0)) * 8 / 1000, 1),
            "packets": packets, "lost": lost,
            "loss_percent": round(100 * lost / (packets + lost), 2) if packets + lost else 0.0,
            "rtt_ms": int(rtcp.get("rtt", 0)), "jitter": int(rtcp.get("jitter-local", 0)),
            "link_quality": int(rtcp.get("in-link-quality", 0)),
        })
    return found
