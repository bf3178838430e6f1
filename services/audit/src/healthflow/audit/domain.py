"""The hash chain: how entries are built, hashed and verified (pure: no I/O).

Definitions (the contract a third party needs to re-verify an exported log):

* An entry has a 0-based ``seq``; entry ``n`` follows entry ``n - 1`` with no gap.
* Its **hash view** is the JSON object::

      {"seq": <int>,
       "appended_at": "<YYYY-MM-DDTHH:MM:SS.mmmZ>",   # UTC, millisecond precision
       "envelope": <the CloudEvents 1.0 envelope in JSON mode>}

  where the envelope is the event's structured-mode JSON object as the
  CloudEvent model serializes it (``CloudEvent.model_dump(mode="json",
  exclude_none=True)``: ``time`` an RFC 3339 UTC string with ``Z``, null or
  absent optional attributes omitted, ``data`` as parsed). This exact object is
  what the entry stores as ``envelope``, so the hash can be recomputed from the
  stored entry alone. For an event type whose contract says ``audit_data = "digest"``
  (clinical content, e.g. ``encounter.coded``) the stored envelope's ``data`` is
  ``{"sha256": <hex SHA-256 of the data's RFC 8785 bytes>}`` instead: the log proves
  what was published, a holder of the event can show it matches, and the log holds no
  diagnosis.
* Its **canonical bytes** are the RFC 8785 JSON Canonicalization Scheme (JCS)
  serialization of the hash view (``rfc8785.dumps``: UTF-8, keys sorted by
  UTF-16 code units, ECMAScript number formatting). JCS admits only numbers an
  IEEE 754 double holds exactly (integers within ±(2**53 - 1), no NaN or
  infinities); an envelope outside that domain cannot be chained
  (:class:`UnhashableEvent`).
* ``hash = lowercase hex SHA-256( ASCII(prev_hash) ‖ canonical bytes )``
  (FIPS 180-4), where ``prev_hash`` is the previous entry's ``hash`` (64
  lowercase hex characters) and, for entry 0, :data:`GENESIS_HASH` (64 zeros).

The other stored fields of an entry (``event_id``, ``type``, ``subject``,
``actor``, ``patientid``, ``source``, ``time``) are copies of envelope
attributes kept for querying; :class:`ChainVerifier` checks that they still
agree with the (hashed) envelope, so none of them can be altered unnoticed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785

from healthflow.common.events.envelope import CloudEvent
from healthflow.contracts import load_all, payload_model

load_all()  # every contract, for each type's ``audit_data``

GENESIS_HASH = "0" * 64
"""``prev_hash`` of entry 0."""

MAX_SEQ = 2**63 - 1
"""The largest ``seq`` an entry can have: a MongoDB (BSON int64) field's largest integer."""

_JCS_MAX_INT = 2**53 - 1
"""The largest integer RFC 8785 serializes (an IEEE 754 double holds it exactly)."""

_HASH_RE = re.compile(r"^[0-9a-f]{64}$")

INDEXED_ATTRIBUTES = ("type", "subject", "actor", "patientid", "source")
"""Envelope attributes copied onto each entry under the same name (for filters)."""


class UnhashableEvent(ValueError):
    """The envelope holds a value RFC 8785 cannot canonicalize (e.g. an integer ≥ 2**53)."""


@dataclass(frozen=True)
class ChainHead:
    """The last entry of the chain: its ``seq`` (-1 when empty) and ``hash``."""

    seq: int
    hash: str

    @classmethod
    def genesis(cls) -> ChainHead:
        return cls(seq=-1, hash=GENESIS_HASH)

    @property
    def empty(self) -> bool:
        return self.seq < 0


@dataclass(frozen=True)
class Entry:
    """One log entry. ``time`` and ``appended_at`` are aware UTC datetimes (ms precision)."""

    seq: int
    event_id: str
    type: str
    subject: str | None
    actor: str | None
    patientid: str | None
    source: str
    time: datetime
    envelope: dict[str, Any]
    prev_hash: str
    hash: str
    appended_at: datetime


def to_millis(value: datetime) -> datetime:
    """``value`` in UTC truncated to whole milliseconds (BSON's precision).

    Raises:
        ValueError: ``value`` is naive.
    """
    if value.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def rfc3339_millis(value: datetime) -> str:
    """``value`` as RFC 3339 UTC with milliseconds: ``2026-11-21T10:00:00.123Z``."""
    return to_millis(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class PreparedEvent:
    """An event with its ``envelope`` (structured-mode JSON object) and that
    envelope's RFC 8785 bytes, computed once (:func:`prepare`) and reused by
    :func:`chain`, so a delivery can be canonicalized before its append's
    transaction starts."""

    event: CloudEvent
    envelope: dict[str, Any]
    canonical: bytes


def prepare(event: CloudEvent) -> PreparedEvent:
    """The event's envelope and its RFC 8785 bytes; for a type whose contract keeps its
    payload out of the log (``audit_data = "digest"``: clinical content) the envelope's
    ``data`` is ``{"sha256": <lowercase hex SHA-256 of the data's RFC 8785 bytes>}``.

    Raises:
        UnhashableEvent: when RFC 8785 cannot canonicalize it.
    """
    envelope = event.model_dump(mode="json", exclude_none=True)
    try:
        model = payload_model(event.type)
        if model is not None and model.audit_data == "digest" and "data" in envelope:
            digest = hashlib.sha256(rfc8785.dumps(envelope["data"])).hexdigest()
            envelope["data"] = {"sha256": digest}
        canonical = rfc8785.dumps(envelope)
    except rfc8785.CanonicalizationError as exc:
        raise UnhashableEvent(f"event {event.id} cannot be canonicalized: {exc}") from None
    return PreparedEvent(event, envelope, canonical)


def envelope_json(event: CloudEvent) -> dict[str, Any]:
    """The event's structured-mode JSON object: the ``envelope`` of the hash view.

    Raises:
        UnhashableEvent: when RFC 8785 cannot canonicalize it.
    """
    return prepare(event).envelope


def canonical_bytes(seq: int, appended_at: datetime, envelope: Mapping[str, Any]) -> bytes:
    """RFC 8785 bytes of the hash view ``{"seq", "appended_at", "envelope"}``.

    Raises:
        UnhashableEvent: when RFC 8785 cannot canonicalize the envelope.
    """
    view: dict[str, Any] = {
        "seq": seq, "appended_at": rfc3339_millis(appended_at), "envelope": dict(envelope)}
    try:
        return rfc8785.dumps(view)
    except rfc8785.CanonicalizationError as exc:
        raise UnhashableEvent(f"entry {seq} cannot be canonicalized: {exc}") from None


def entry_hash(prev_hash: str, seq: int, appended_at: datetime,
               envelope: Mapping[str, Any]) -> str:
    """``hex(SHA-256(ASCII(prev_hash) ‖ canonical_bytes(seq, appended_at, envelope)))``.

    Raises:
        ValueError: ``prev_hash`` is not 64 lowercase hex characters.
        UnhashableEvent: when RFC 8785 cannot canonicalize the envelope.
    """
    if not _HASH_RE.match(prev_hash):
        raise ValueError("prev_hash must be 64 lowercase hex characters")
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical_bytes(seq, appended_at, envelope))
    return digest.hexdigest()


def _view_bytes(seq: int, appended_at: datetime, envelope_canonical: bytes) -> bytes:
    """:func:`canonical_bytes` from the envelope's RFC 8785 bytes, without re-serializing
    it: the view's three keys are ASCII and sort as ``appended_at``, ``envelope``,
    ``seq``; the timestamp needs no escaping and ``seq`` (an integer below 2**53)
    is its decimal digits, as RFC 8785 writes them."""
    if not 0 <= seq <= _JCS_MAX_INT:
        raise UnhashableEvent(f"entry {seq} cannot be canonicalized: seq beyond 2**53 - 1")
    return b"".join((b'{"appended_at":"', rfc3339_millis(appended_at).encode("ascii"),
                     b'","envelope":', envelope_canonical, b',"seq":', str(seq).encode("ascii"),
                     b"}"))


def chain(head: ChainHead, events: Sequence[CloudEvent | PreparedEvent],
          appended_at: datetime) -> list[Entry]:
    """The entries that append ``events`` (in order) after ``head``.

    ``appended_at`` (aware) is stored at millisecond precision. Events prepared
    by :func:`prepare` are not canonicalized again. Returns an empty list for no events.

    Raises:
        UnhashableEvent: an event cannot be canonicalized (nothing is returned).
    """
    at = to_millis(appended_at)
    entries: list[Entry] = []
    prev_hash, seq = head.hash, head.seq
    if not _HASH_RE.match(prev_hash):
        raise ValueError("prev_hash must be 64 lowercase hex characters")
    for item in events:
        seq += 1
        prepared = item if isinstance(item, PreparedEvent) else prepare(item)
        event = prepared.event
        digest = hashlib.sha256(prev_hash.encode("ascii"))
        digest.update(_view_bytes(seq, at, prepared.canonical))
        entries.append(
            Entry(
                seq=seq, event_id=event.id, type=event.type, subject=event.subject,
                actor=event.actor, patientid=event.patientid, source=event.source,
                time=to_millis(event.time), envelope=prepared.envelope, prev_hash=prev_hash,
                hash=digest.hexdigest(), appended_at=at,
            )
        )
        prev_hash = entries[-1].hash
    return entries


@dataclass(frozen=True)
class Verification:
    """Outcome of checking a run of entries.

    ``checked`` counts entries found intact before the first break;
    ``first_broken_index`` is the ``seq`` of the first entry that is missing or
    whose stored content no longer matches (``None`` when ``ok``); ``reason``
    says which rule it broke.
    """

    ok: bool
    checked: int
    first_broken_index: int | None = None
    reason: str | None = None


class ChainVerifier:
    """Checks entries fed in ``seq`` order, stopping at the first break.

    Incremental so that a long chain can be streamed through it. Entries are
    mappings with the :class:`Entry` field names (``seq``, ``envelope``,
    ``prev_hash``, ``hash``, ``appended_at``, and the copied attributes); any
    of them may be missing or of the wrong type, as a tampered record might be.
    Each entry must:

    1. carry the expected ``seq`` (the previous one plus one: no gap);
    2. have ``prev_hash`` equal to the previous entry's ``hash`` (or the given
       starting hash);
    3. have ``hash`` equal to :func:`entry_hash` recomputed from its stored
       ``seq``, ``appended_at`` and ``envelope``;
    4. have ``event_id``, ``time`` and the :data:`INDEXED_ATTRIBUTES` equal to
       the envelope's ``id``, ``time`` (to the millisecond) and attributes.
    """

    def __init__(self, start_seq: int = 0, prev_hash: str = GENESIS_HASH) -> None:
        self.expected_seq = start_seq
        self.prev_hash = prev_hash
        self.checked = 0
        self.broken: Verification | None = None

    def _break(self, seq: int, reason: str) -> bool:
        self.broken = Verification(ok=False, checked=self.checked,
                                   first_broken_index=seq, reason=reason)
        return False

    def feed(self, entry: Mapping[str, Any]) -> bool:
        """Check the next entry; ``False`` once the chain is broken (stop feeding)."""
        if self.broken is not None:
            return False
        seq = self.expected_seq
        if entry.get("seq") != seq:
            found = entry.get("seq")
            if isinstance(found, int) and found > seq:
                return self._break(seq, f"entry {seq} is missing")
            return self._break(seq, f"entry {seq} has seq {found!r}")
        if entry.get("prev_hash") != self.prev_hash:
            return self._break(seq, "prev_hash does not match the previous entry's hash")
        envelope, appended_at = entry.get("envelope"), entry.get("appended_at")
        if not isinstance(envelope, Mapping) or not isinstance(appended_at, datetime):
            return self._break(seq, "envelope or appended_at is missing or malformed")
        try:
            recomputed = entry_hash(self.prev_hash, seq, appended_at, envelope)
        except (ValueError, TypeError):
            return self._break(seq, "the stored entry cannot be canonicalized")
        if entry.get("hash") != recomputed:
            return self._break(seq, "hash does not match the stored content")
        mismatch = _copied_attribute_mismatch(entry, envelope)
        if mismatch is not None:
            return self._break(seq, f"{mismatch} disagrees with the envelope")
        self.prev_hash = recomputed
        self.expected_seq += 1
        self.checked += 1
        return True

    def finish(self, last_seq: int, head: ChainHead | None = None) -> Verification:
        """The outcome once entries up to ``last_seq`` were fed.

        When ``head`` is given and the run reached it (``last_seq`` is its
        ``seq``), the head's hash must equal the last entry's (an entry removed
        at the end shows here).
        """
        if self.broken is not None:
            return self.broken
        if self.expected_seq <= last_seq:
            self._break(self.expected_seq, f"entry {self.expected_seq} is missing")
            assert self.broken is not None
            return self.broken
        reached_head = head is not None and last_seq == head.seq and (
            self.checked > 0 or head.empty)
        if reached_head and head is not None and head.hash != self.prev_hash:
            self._break(last_seq, "the chain head's hash does not match the last entry")
            assert self.broken is not None
            return self.broken
        return Verification(ok=True, checked=self.checked)


def verify_chain(entries: Iterable[Mapping[str, Any]], *, start_seq: int = 0,
                 prev_hash: str = GENESIS_HASH, last_seq: int | None = None,
                 head: ChainHead | None = None) -> Verification:
    """Check ``entries`` (in ``seq`` order from ``start_seq``) with :class:`ChainVerifier`.

    ``last_seq`` (default: the head's ``seq``, else the last entry seen) is the
    ``seq`` the run must reach.
    """
    verifier = ChainVerifier(start_seq, prev_hash)
    for entry in entries:
        if not verifier.feed(entry):
            break
    if last_seq is None:
        last_seq = head.seq if head is not None else verifier.expected_seq - 1
    return verifier.finish(last_seq, head)


def _copied_attribute_mismatch(entry: Mapping[str, Any],
                               envelope: Mapping[str, Any]) -> str | None:
    if entry.get("event_id") != envelope.get("id"):
        return "event_id"
    for name in INDEXED_ATTRIBUTES:
        if entry.get(name) != envelope.get(name):
            return name
    stored_time, raw_time = entry.get("time"), envelope.get("time")
    try:
        event_time = to_millis(datetime.fromisoformat(str(raw_time)))
    except ValueError:
        return "time"
    if not isinstance(stored_time, datetime) or to_millis(stored_time) != event_time:
        return "time"
    return None


CATEGORIES: dict[str, frozenset[str]] = {
    "privilege-change": frozenset({"user.role_changed", "staff.assigned",
                                   "auth.signing_key_rotated"}),
    "login-failure": frozenset({"auth.login_failed"}),
    "login": frozenset({"auth.login_succeeded", "auth.login_failed"}),
    "record-access": frozenset({"patient.record_accessed", "record.accessed",
                                "prescription.accessed", "xray.accessed",
                                "record.emergency_access_granted"}),
    "break-the-glass": frozenset({"record.emergency_access_granted"}),
}
"""Named sets of event types officers ask for (``?category=``): every privilege change
(a role given or taken, a staff membership, the token signing key rotated), failed
logins, every login attempt, every read of someone's chart or record (and every
emergency grant to read one), and every break-the-glass grant (each to be reviewed)."""


@dataclass(frozen=True)
class Failure:
    """One ``auth.login_failed`` entry: its ``seq``, event ``time`` (aware UTC) and the key
    it is grouped by (the account's user id or the client address)."""

    seq: int
    time: datetime
    key: str


@dataclass(frozen=True)
class Burst:
    """``count`` failures for ``key`` from ``first`` to ``last`` (aware UTC), their ``seqs``."""

    key: str
    count: int
    first: datetime
    last: datetime
    seqs: tuple[int, ...]


def login_failure_bursts(failures: Sequence[Failure], *, threshold: int,
                         gap_seconds: float) -> list[Burst]:
    """Failed-login bursts: per key, the maximal runs of failures in which no two
    consecutive failures (in time order) are more than ``gap_seconds`` apart, kept when
    they hold at least ``threshold`` failures (the repeated failed attempts NIST SP
    800-63B §5.2.2 asks to limit and OWASP ASVS V2.2.1 to detect).

    Returns the bursts ordered by ``first`` then ``key``.
    """
    by_key: dict[str, list[Failure]] = {}
    for failure in failures:
        by_key.setdefault(failure.key, []).append(failure)
    bursts: list[Burst] = []
    for key, items in by_key.items():
        items.sort(key=lambda f: (f.time, f.seq))
        runs: list[list[Failure]] = []
        for failure in items:
            if runs and (failure.time - runs[-1][-1].time).total_seconds() <= gap_seconds:
                runs[-1].append(failure)
            else:
                runs.append([failure])
        bursts += [Burst(key, len(run), run[0].time, run[-1].time, tuple(f.seq for f in run))
                   for run in runs if len(run) >= threshold]
    return sorted(bursts, key=lambda b: (b.first, b.key))
