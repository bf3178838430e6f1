"""Patient rules without I/O: new profiles, section updates, consents."""

from __future__ import annotations

from datetime import UTC, datetime

from healthflow.patient.domain import (
    AccessorRole,
    Purpose,
    default_purpose,
    new_profile,
    plan_update,
)

NOW = datetime(2026, 11, 21, 8, tzinfo=UTC)


def profile() -> dict:
    return new_profile("u1", full_name="Ada Lovelace", email="ada@example.org", phone=None,
                       now=NOW)


def test_new_profile_has_no_consents_given() -> None:
    doc = profile()
    assert doc["_id"] == "u1" and doc["name"]["text"] == "Ada Lovelace"
    assert doc["consents"] == {c: {"granted": False, "at": None} for c in ("sms", "email", "push")}


def test_only_changed_sections_are_reported() -> None:
    doc = profile()
    update = plan_update(doc, {"telecom": {"email": "ada@example.org", "phone": None},
                               "gender": "female", "birth_date": "1815-12-10"}, NOW)
    assert update.sections == ["birth_date", "gender"]
    assert update.fields["updated_at"] == NOW and "telecom" not in update.fields
    assert plan_update(doc, {}, NOW).fields == {}


def test_list_items_get_ids_and_keep_given_ones() -> None:
    update = plan_update(profile(), {"allergies": [
        {"id": "a1", "code": {"text": "penicillin"}},
        {"code": {"text": "peanut", "system": "http://snomed.info/sct", "code": "91935009"}},
    ]}, NOW)
    ids = [a["id"] for a in update.fields["allergies"]]
    assert ids[0] == "a1" and ids[1] and ids[1] != "a1"


def test_consents_change_per_channel_only_when_flipped() -> None:
    doc = profile()
    doc["consents"]["email"] = {"granted": True, "at": NOW}
    update = plan_update(doc, {"consents": {"email": True, "sms": True, "push": None}}, NOW)
    assert [(c.channel, c.granted) for c in update.consent_changes] == [("sms", True)]
    assert update.fields == {"consents.sms": {"granted": True, "at": NOW}, "updated_at": NOW}
    assert update.sections == ["consents"]
    withdraw = plan_update(doc, {"consents": {"email": False}}, NOW)
    assert [(c.channel, c.granted) for c in withdraw.consent_changes] == [("email", False)]


def test_default_purpose_by_role() -> None:
    assert default_purpose(AccessorRole.TREATING_DOCTOR) is Purpose.TREATMENT
    assert default_purpose(AccessorRole.STAFF) is Purpose.PATIENT_SUPPORT
