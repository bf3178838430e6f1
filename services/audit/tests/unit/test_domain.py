"""The hash chain's rules, without I/O."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785

from healthflow.audit import domain
from healthflow.audit.domain import GENESIS_HASH, ChainHead, ChainVerifier, verify_chain
from healthflow.common.events.envelope import CloudEvent

APPENDED = datetime(2026, 11, 21, 10, 0, 0, 123_456, tzinfo=UTC)


def views(entries: list[domain.Entry]) -> list[dict[str, Any]]:
    """Entries as the store hands them to the verifier (plain mappings)."""
    return [dict(vars(e)) for e in entries]


@pytest.fixture
def entries(make_event: Callable[..., CloudEvent]) -> list[domain.Entry]:
    events = [make_event("patient.updated", n=i) for i in range(5)]
    return domain.chain(ChainHead.genesis(), events, APPENDED)


def test_hash_is_sha256_of_prev_hash_and_the_rfc8785_view() -> None:
    envelope = {"type": "a.b", "id": "e-1", "data": {"z": 1.0, "a": "é"}, "specversion": "1.0"}
    expected_bytes = (
        b'{"appended_at":"2026-11-21T10:00:00.123Z",'
        b'"envelope":{"data":{"a":"\xc3\xa9","z":1},"id":"e-1","specversion":"1.0",'
        b'"type":"a.b"},"seq":7}'
    )
    assert domain.canonical_bytes(7, APPENDED, envelope) == expected_bytes
    assert rfc8785.dumps({"seq": 7, "appended_at": "2026-11-21T10:00:00.123Z",
                          "envelope": envelope}) == expected_bytes
    prev = "ab" * 32
    assert domain.entry_hash(prev, 7, APPENDED, envelope) == hashlib.sha256(
        prev.encode("ascii") + expected_bytes
    ).hexdigest()


def test_hash_depends_on_every_input() -> None:
    envelope = {"id": "e-1", "data": {"n": 1}}
    base = domain.entry_hash(GENESIS_HASH, 0, APPENDED, envelope)
    assert domain.entry_hash("1" * 64, 0, APPENDED, envelope) != base
    assert domain.entry_hash(GENESIS_HASH, 1, APPENDED, envelope) != base
    assert domain.entry_hash(GENESIS_HASH, 0, APPENDED + timedelta(milliseconds=1),
                             envelope) != base
    assert domain.entry_hash(GENESIS_HASH, 0, APPENDED, {"id": "e-1", "data": {"n": 2}}) != base


def test_prev_hash_must_be_64_lowercase_hex() -> None:
    for bad in ("", "0" * 63, "A" * 64, "g" * 64):
        with pytest.raises(ValueError, match="prev_hash"):
            domain.entry_hash(bad, 0, APPENDED, {})


def test_times_are_utc_milliseconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 11, 21, 12, 0, 0, 999_999, tzinfo=plus_two)
    assert domain.rfc3339_millis(local) == "2026-11-21T10:00:00.999Z"
    assert domain.to_millis(local) == datetime(2026, 11, 21, 10, 0, 0, 999_000, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        domain.to_millis(datetime(2026, 11, 21, 10, 0))


def test_chain_links_from_genesis(entries: list[domain.Entry]) -> None:
    assert [e.seq for e in entries] == [0, 1, 2, 3, 4]
    assert entries[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
    assert len({e.hash for e in entries}) == 5
    assert all(e.appended_at == domain.to_millis(APPENDED) for e in entries)


def test_chain_continues_after_a_head(entries: list[domain.Entry],
                                      make_event: Callable[..., CloudEvent]) -> None:
    head = ChainHead(seq=entries[-1].seq, hash=entries[-1].hash)
    more = domain.chain(head, [make_event(), make_event()], APPENDED)
    assert [e.seq for e in more] == [5, 6]
    assert more[0].prev_hash == entries[-1].hash
    assert verify_chain(views(entries + more)).ok


def test_entry_copies_envelope_attributes(make_event: Callable[..., CloudEvent]) -> None:
    event = make_event("appointment.booked", subject="appointment/a-1", actor="u-9",
                       patientid="p-7", when=datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC))
    (entry,) = domain.chain(ChainHead.genesis(), [event], APPENDED)
    assert (entry.event_id, entry.type, entry.subject, entry.actor, entry.patientid) == (
        event.id, "appointment.booked", "appointment/a-1", "u-9", "p-7")
    assert entry.time == datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    assert entry.envelope == event.model_dump(mode="json", exclude_none=True)
    assert entry.envelope["time"] == "2026-01-02T03:04:05.678901Z"


def test_clinical_content_is_kept_as_a_digest_only(
        make_event: Callable[..., CloudEvent]) -> None:
    """``encounter.coded`` (contract ``audit_data = "digest"``) is chained with its data
    replaced by the SHA-256 of the data's RFC 8785 bytes: no diagnosis code in the log,
    and whoever holds the event can show it is the one logged."""
    data = {"encounter_id": "e-1", "patient_id": "p-1", "diagnoses": [
        {"system": "http://hl7.org/fhir/sid/icd-10", "code": "F32.1", "display": "x"}]}
    coded = make_event("encounter.coded", **data)
    (entry,) = domain.chain(ChainHead.genesis(), [coded], APPENDED)
    digest = hashlib.sha256(rfc8785.dumps(coded.model_dump(mode="json")["data"])).hexdigest()
    assert entry.envelope["data"] == {"sha256": digest}
    assert "F32.1" not in str(vars(entry))
    assert verify_chain(views([entry])).ok
    other = make_event("encounter.started", **data)  # full data for every other type
    assert domain.envelope_json(other)["data"]["diagnoses"][0]["code"] == "F32.1"


@pytest.mark.parametrize("type_", ["emergency.raised", "emergency.located"])
def test_where_a_named_person_fell_ill_is_kept_as_a_digest_only(
        make_event: Callable[..., CloudEvent], type_: str) -> None:
    """An emergency's coordinates beside its patient's id would sit in the permanent log
    for good: ``emergency.raised`` and ``emergency.located`` are chained as a digest,
    with the patient, actor and subject still there to answer "what happened to whom"."""
    data = {"emergency_id": "em-1", "latitude": 60.171234, "longitude": 24.941567,
            "accuracy_m": 8.0, "priority": "P1", "patient_id": "p-1"}
    event = make_event(type_, subject="emergency/em-1", patientid="p-1", **data)
    (entry,) = domain.chain(ChainHead.genesis(), [event], APPENDED)
    digest = hashlib.sha256(rfc8785.dumps(event.model_dump(mode="json")["data"])).hexdigest()
    assert entry.envelope["data"] == {"sha256": digest}
    assert "60.17" not in str(vars(entry)) and "24.94" not in str(vars(entry))
    assert (entry.patientid, entry.subject, entry.type) == ("p-1", "emergency/em-1", type_)
    assert verify_chain(views([entry])).ok


def test_unhashable_event_is_refused(make_event: Callable[..., CloudEvent]) -> None:
    with pytest.raises(domain.UnhashableEvent):
        domain.chain(ChainHead.genesis(), [make_event(big=2**60)], APPENDED)
    with pytest.raises(domain.UnhashableEvent):
        domain.envelope_json(make_event(nested=[{"big": -(2**53)}]))
    assert domain.envelope_json(make_event(edge=2**53 - 1))["data"] == {"edge": 2**53 - 1}


def test_intact_chain_verifies(entries: list[domain.Entry]) -> None:
    head = ChainHead(seq=4, hash=entries[-1].hash)
    result = verify_chain(views(entries), head=head)
    assert result == domain.Verification(ok=True, checked=5)
    assert verify_chain([], head=ChainHead.genesis()).ok


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("envelope", {"tampered": True}, "hash does not match"),
        ("hash", "f" * 64, "hash does not match"),
        ("prev_hash", "e" * 64, "prev_hash"),
        ("appended_at", APPENDED + timedelta(seconds=1), "hash does not match"),
        ("actor", "someone-else", "actor disagrees"),
        ("patientid", "p-other", "patientid disagrees"),
        ("type", "user.deactivated", "type disagrees"),
        ("event_id", "other-id", "event_id disagrees"),
        ("time", datetime(2020, 1, 1, tzinfo=UTC), "time disagrees"),
        ("seq", 1, "has seq"),
        ("seq", 9, "entry 2 is missing"),
    ],
)
def test_an_altered_entry_is_named(entries: list[domain.Entry], field: str, value: Any,
                                   reason: str) -> None:
    stored = views(entries)
    stored[2][field] = value
    result = verify_chain(stored)
    assert not result.ok
    assert result.first_broken_index == 2
    assert result.checked == 2
    assert result.reason is not None and reason in result.reason


def test_altered_envelope_data_is_named(entries: list[domain.Entry]) -> None:
    stored = views(entries)
    stored[3]["envelope"] = {**stored[3]["envelope"], "data": {"n": 999}}
    result = verify_chain(stored)
    assert (result.ok, result.first_broken_index) == (False, 3)


def test_a_removed_entry_is_named(entries: list[domain.Entry]) -> None:
    stored = views(entries)
    del stored[1]
    result = verify_chain(stored)
    assert (result.ok, result.first_broken_index, result.checked) == (False, 1, 1)
    assert result.reason == "entry 1 is missing"


def test_a_removed_last_entry_is_named_against_the_head(entries: list[domain.Entry]) -> None:
    head = ChainHead(seq=4, hash=entries[-1].hash)
    result = verify_chain(views(entries)[:-1], head=head)
    assert (result.ok, result.first_broken_index) == (False, 4)


def test_a_head_that_disagrees_is_named(entries: list[domain.Entry]) -> None:
    result = verify_chain(views(entries), head=ChainHead(seq=4, hash="c" * 64))
    assert (result.ok, result.first_broken_index) == (False, 4)
    assert result.reason is not None and "head" in result.reason


def test_a_malformed_record_breaks_without_raising(entries: list[domain.Entry]) -> None:
    stored = views(entries)
    del stored[0]["envelope"]
    assert verify_chain(stored).first_broken_index == 0
    stored = views(entries)
    stored[0]["envelope"] = {**stored[0]["envelope"], "data": {"big": 2**60}}
    assert verify_chain(stored).first_broken_index == 0


def test_verification_can_start_mid_chain(entries: list[domain.Entry]) -> None:
    verifier = ChainVerifier(start_seq=2, prev_hash=entries[1].hash)
    assert all(verifier.feed(e) for e in views(entries)[2:])
    assert verifier.finish(4) == domain.Verification(ok=True, checked=3)
    wrong_start = ChainVerifier(start_seq=2, prev_hash=entries[0].hash)
    assert not wrong_start.feed(views(entries)[2])
    assert wrong_start.finish(4).first_broken_index == 2


def test_feeding_stops_after_the_first_break(entries: list[domain.Entry]) -> None:
    stored = views(entries)
    stored[1]["hash"] = "0" * 64
    stored[3]["hash"] = "0" * 64
    verifier = ChainVerifier()
    results = [verifier.feed(e) for e in stored]
    assert results == [True, False, False, False, False]
    assert verifier.finish(4).first_broken_index == 1


def test_prepared_events_hash_as_the_canonical_view(make_event: Callable[..., CloudEvent]) -> None:
    """The chain builds the view's bytes from the envelope's RFC 8785 bytes; they must be
    exactly those of ``canonical_bytes`` (non-ASCII text, nesting, numbers included)."""
    events = [make_event(text="Zoë \u2028 \U0001f600", nested={"b": [1, 2.5, None], "a": True}),
              make_event(n=-(2**53 - 1), e=1e-7), make_event()]
    head = ChainHead(seq=41, hash="ab" * 32)
    prepared = domain.chain(head, [domain.prepare(e) for e in events], APPENDED)
    assert prepared == domain.chain(head, events, APPENDED)
    prev = head.hash
    for entry in prepared:
        assert entry.hash == domain.entry_hash(prev, entry.seq, APPENDED, entry.envelope)
        prev = entry.hash
    assert verify_chain(views(prepared), start_seq=42, prev_hash=head.hash).ok
    with pytest.raises(domain.UnhashableEvent):
        domain.chain(ChainHead(seq=2**53 - 1, hash=GENESIS_HASH), events[:1], APPENDED)
