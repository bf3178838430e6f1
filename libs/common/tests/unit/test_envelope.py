from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from healthflow.common.events.envelope import CloudEvent, EventPayload, catalog, event_type


@event_type("unittest.thing_happened", version=2)
class ThingHappened(EventPayload):
    thing_id: str
    count: int


def test_build_carries_type_version_and_aware_time():
    event = CloudEvent.build(
        ThingHappened(thing_id="t1", count=3), source="/healthflow/test", subject="t1",
        actor="user-1", patientid="p-1",
    )
    assert event.type == "unittest.thing_happened"
    assert event.dataschema == "urn:healthflow:event:unittest.thing_happened:v2"
    assert event.time.tzinfo is not None and event.time.utcoffset().total_seconds() == 0
    assert event.payload(ThingHappened) == ThingHappened(thing_id="t1", count=3)


def test_json_round_trip_is_lossless():
    event = CloudEvent.build(ThingHappened(thing_id="t", count=1), source="/s")
    assert CloudEvent.from_json_bytes(event.to_json_bytes()) == event


def test_naive_time_and_wrong_specversion_are_refused():
    with pytest.raises(ValidationError, match="timezone-aware"):
        CloudEvent(source="/s", type="a.b", time=datetime(2026, 1, 1))
    with pytest.raises(ValidationError, match="specversion"):
        CloudEvent(source="/s", type="a.b", specversion="0.3")


def test_type_must_be_a_dotted_lowercase_name():
    with pytest.raises(ValidationError):
        CloudEvent(source="/s", type="Appointment Booked")
    assert CloudEvent(source="/s", type="appointment.no_show", time=datetime.now(UTC))


def test_unknown_envelope_attributes_are_refused():
    with pytest.raises(ValidationError):
        CloudEvent.model_validate({"source": "/s", "type": "a.b", "surprise": 1})


def test_catalog_lists_registered_types_with_schema():
    entry = catalog()["unittest.thing_happened"]
    assert entry["version"] == 2
    assert set(entry["schema"]["properties"]) == {"thing_id", "count"}


def test_a_type_cannot_be_registered_twice_by_different_models():
    with pytest.raises(ValueError, match="already registered"):

        @event_type("unittest.thing_happened")
        class Other(EventPayload):
            x: int
