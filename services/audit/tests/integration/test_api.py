"""The compliance API: permissions, filters, pagination, verification, no writes."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import pytest
import rfc8785

from healthflow.audit import store
from healthflow.common.errors import PROBLEM_JSON
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import OUTBOX

if TYPE_CHECKING:
    from ..conftest import Audit


def is_problem(response: object, status: int) -> bool:
    return (getattr(response, "status_code", None) == status
            and response.headers["content-type"].startswith(PROBLEM_JSON)  # type: ignore[attr-defined]
            and response.json()["status"] == status)  # type: ignore[attr-defined]


@pytest.fixture
async def seeded(audit: Audit, make_event: Callable[..., CloudEvent],
                 at: Callable[[int], datetime]) -> list[CloudEvent]:
    """Six events over six minutes, two types, two actors, two patients (seq 0..5)."""
    events = [
        make_event("appointment.booked", subject="appointment/a-1", actor="u-1",
                   patientid="p-1", when=at(0)),
        make_event("appointment.booked", subject="appointment/a-2", actor="u-2",
                   patientid="p-2", when=at(1)),
        make_event("patient.updated", subject="patient/p-1", actor="u-1",
                   patientid="p-1", when=at(2)),
        make_event("appointment.cancelled", subject="appointment/a-1", actor="u-2",
                   patientid="p-1", when=at(3)),
        make_event("patient.updated", subject="patient/p-2", actor="u-2",
                   patientid="p-2", when=at(4)),
        make_event("user.deactivated", subject="user/u-3", actor="u-1",
                   patientid=None, when=at(5)),
    ]
    for event in events:  # one at a time, so seq follows this order
        await audit.deliver(event)
    return events


async def test_reading_needs_a_token_and_audit_read(audit: Audit) -> None:
    for path in ("/events", "/events/0", "/head", "/verify"):
        anonymous = await audit.client.get(f"/api/v1/audit{path}")
        assert is_problem(anonymous, 401), path
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        patient = await audit.client.get(f"/api/v1/audit{path}",
                                         headers=audit.tokens.headers(roles=["patient"]))
        assert is_problem(patient, 403), path
        doctor = await audit.client.get(f"/api/v1/audit{path}",
                                        headers=audit.tokens.headers(roles=["doctor"]))
        assert is_problem(doctor, 403), path
    for role in ("admin", "compliance_officer"):
        allowed = await audit.client.get("/api/v1/audit/head",
                                         headers=audit.tokens.headers(roles=[role]))
        assert allowed.status_code == 200, role


async def test_entries_cannot_be_changed_or_removed(audit: Audit,
                                                     seeded: list[CloudEvent]) -> None:
    for method in ("PUT", "PATCH", "DELETE"):
        for path in ("/events", "/events/0", "/head", "/verify"):
            response = await audit.client.request(
                method, f"/api/v1/audit{path}", headers=audit.officer(), json={"x": 1})
            assert is_problem(response, 405), (method, path)
    assert await audit.db[store.ENTRIES].count_documents({}) == len(seeded)
    assert (await audit.get("/verify")).json()["ok"] is True


async def test_list_is_newest_first_with_every_field(audit: Audit,
                                                     seeded: list[CloudEvent]) -> None:
    response = await audit.get("/events")
    assert response.status_code == 200
    page = response.json()
    assert [i["seq"] for i in page["items"]] == [5, 4, 3, 2, 1, 0]
    assert page["next_cursor"] is None
    last = page["items"][0]
    event = seeded[5]
    assert last["event_id"] == event.id
    assert (last["type"], last["subject"], last["actor"], last["patientid"]) == (
        "user.deactivated", "user/u-3", "u-1", None)
    assert last["source"] == event.source
    assert datetime.fromisoformat(last["time"]) == event.time
    assert last["envelope"] == event.model_dump(mode="json", exclude_none=True)
    assert last["prev_hash"] == page["items"][1]["hash"]
    one = await audit.get("/events/5")
    assert one.json() == last
    assert is_problem(await audit.get("/events/6"), 404)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type": "appointment.booked"}, [1, 0]),
        ({"subject": "appointment/a-1"}, [3, 0]),
        ({"actor": "u-2"}, [4, 3, 1]),
        ({"patient": "p-1"}, [3, 2, 0]),
        ({"patient": "p-1", "actor": "u-1"}, [2, 0]),
        ({"from": "2026-11-21T10:02:00Z"}, [5, 4, 3, 2]),
        ({"to": "2026-11-21T10:02:00Z"}, [1, 0]),
        ({"from": "2026-11-21T11:01:00+01:00", "to": "2026-11-21T10:04:00Z"}, [3, 2, 1]),
        ({"from": "2026-11-21T10:03:00Z", "to": "2026-11-21T10:03:00Z"}, []),
        ({"type": "nothing.here"}, []),
    ],
)
async def test_filters(audit: Audit, seeded: list[CloudEvent], params: dict[str, str],
                       expected: list[int]) -> None:
    response = await audit.get("/events", **params)
    assert response.status_code == 200, response.text
    assert [i["seq"] for i in response.json()["items"]] == expected


async def test_cursor_pagination_walks_everything_once(audit: Audit,
                                                       seeded: list[CloudEvent]) -> None:
    seen: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        params = {"limit": "4"} | ({"cursor": cursor} if cursor else {})
        page = (await audit.get("/events", **params)).json()
        seen += [i["seq"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [5, 4, 3, 2, 1, 0]
    filtered = (await audit.get("/events", actor="u-2", limit="2")).json()
    assert [i["seq"] for i in filtered["items"]] == [4, 3]
    rest = (await audit.get("/events", actor="u-2", limit="2",
                            cursor=filtered["next_cursor"])).json()
    assert [i["seq"] for i in rest["items"]] == [1]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/events", {"from": "yesterday"}, 422),
        ("/events", {"to": "2026-13-01T00:00:00Z"}, 422),
        ("/events", {"from": "2026-11-21T10:00:00"}, 422),  # no offset
        ("/events", {"from": "2026-11-21"}, 422),  # a date is not a date-time
        ("/events", {"to": "1795238542"}, 422),  # nor is an epoch number
        ("/events", {"from": "2026-11-21T10:05:00Z", "to": "2026-11-21T10:00:00Z"}, 422),
        ("/events", {"limit": "0"}, 422),
        ("/events", {"limit": "201"}, 422),
        ("/events", {"cursor": "not-a-cursor!"}, 400),
        ("/events", {"cursor": "eyJzZXEiOiItMSJ9"}, 400),  # {"seq":"-1"}
        ("/events/-1", {}, 422),
        ("/events/abc", {}, 422),
        ("/verify", {"from_seq": "-1"}, 422),
        ("/verify", {"from_seq": "3", "to_seq": "2"}, 422),
        ("/verify", {"to_seq": "x"}, 422),
        # Found by Schemathesis (libs/client/tests/test_fuzz.py): past BSON int64 was a 500.
        ("/events/1884040763168602619641856", {}, 422),
        ("/events/9223372036854775808", {}, 422),
        ("/verify", {"from_seq": "9223372036854775808"}, 422),
        ("/verify", {"to_seq": "1884040763168602619641856"}, 422),
        ("/events", {"cursor": "eyJzZXEiOjk5OTk5OTk5OTk5OTk5OTk5OTk5OX0"}, 400),  # huge seq
    ],
)
async def test_bad_parameters_are_problems(audit: Audit, path: str, params: dict[str, str],
                                           status: int) -> None:
    response = await audit.get(path, **params)
    assert is_problem(response, status), response.text
    assert response.json()["detail"]


async def test_head_and_verify_on_an_empty_log(audit: Audit) -> None:
    head = (await audit.get("/head")).json()
    assert head == {"seq": None, "hash": "0" * 64, "length": 0}
    result = (await audit.get("/verify")).json()
    assert result == {"ok": True, "checked": 0, "first_broken_index": None, "reason": None,
                      "from_seq": 0, "to_seq": None, "head_seq": None, "head_hash": "0" * 64}


async def test_verify_an_intact_log(audit: Audit, seeded: list[CloudEvent]) -> None:
    head = (await audit.get("/head")).json()
    newest = (await audit.get("/events/5")).json()
    assert head == {"seq": 5, "hash": newest["hash"], "length": 6}
    result = (await audit.get("/verify")).json()
    assert result == {"ok": True, "checked": 6, "first_broken_index": None, "reason": None,
                      "from_seq": 0, "to_seq": 5, "head_seq": 5, "head_hash": newest["hash"]}
    part = (await audit.get("/verify", from_seq="2", to_seq="3")).json()
    assert (part["ok"], part["checked"], part["to_seq"]) == (True, 2, 3)
    capped = (await audit.get("/verify", from_seq="4", to_seq="99")).json()
    assert (capped["ok"], capped["checked"], capped["to_seq"]) == (True, 2, 5)


async def test_an_entry_altered_in_the_database_is_named(audit: Audit,
                                                         seeded: list[CloudEvent]) -> None:
    changed = await audit.db[store.ENTRIES].update_one(
        {"_id": 3}, {"$set": {"envelope.data": {"n": 2}}})
    assert changed.modified_count == 1
    result = (await audit.get("/verify")).json()
    assert (result["ok"], result["first_broken_index"], result["checked"]) == (False, 3, 3)
    assert "hash" in result["reason"]
    assert (await audit.get("/verify", to_seq="2")).json()["ok"] is True
    later = (await audit.get("/verify", from_seq="4")).json()
    assert later["ok"] is True  # links to entry 3's stored hash, which is untouched


async def test_a_copied_attribute_altered_in_the_database_is_named(
    audit: Audit, seeded: list[CloudEvent]
) -> None:
    await audit.db[store.ENTRIES].update_one({"_id": 1}, {"$set": {"actor": "u-9"}})
    result = (await audit.get("/verify")).json()
    assert (result["ok"], result["first_broken_index"]) == (False, 1)
    assert "actor" in result["reason"]


async def test_a_removed_entry_is_named(audit: Audit, seeded: list[CloudEvent]) -> None:
    await audit.db[store.ENTRIES].delete_one({"_id": 2})
    result = (await audit.get("/verify")).json()
    assert (result["ok"], result["first_broken_index"], result["checked"]) == (False, 2, 2)
    from_three = (await audit.get("/verify", from_seq="3")).json()
    assert (from_three["ok"], from_three["first_broken_index"]) == (False, 2)


async def test_a_removed_last_entry_is_named(audit: Audit, seeded: list[CloudEvent]) -> None:
    await audit.db[store.ENTRIES].delete_one({"_id": 5})
    result = (await audit.get("/verify")).json()
    assert (result["ok"], result["first_broken_index"], result["checked"]) == (False, 5, 5)
    assert result["reason"] == "entry 5 is missing"


async def test_a_rewound_head_is_named(audit: Audit, seeded: list[CloudEvent]) -> None:
    entry_3 = await audit.db[store.ENTRIES].find_one({"_id": 3})
    assert entry_3 is not None
    await audit.db[store.CHAIN].update_one(
        {"_id": store.HEAD_ID}, {"$set": {"seq": 4, "hash": entry_3["hash"]}})
    result = (await audit.get("/verify")).json()
    assert (result["ok"], result["first_broken_index"], result["head_seq"]) == (False, 4, 4)
    assert "head" in result["reason"]


async def test_reads_are_logged_and_emit_no_event(audit: Audit, seeded: list[CloudEvent],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="healthflow.audit.api")
    headers = audit.tokens.headers(sub="officer-7", roles=["compliance_officer"])
    for path in ("/events?patient=p-1", "/events/0", "/head", "/verify"):
        assert (await audit.client.get(f"/api/v1/audit{path}", headers=headers)).is_success
    reads = [r for r in caplog.records if r.getMessage() == "audit log read"]
    assert [(r.caller, r.path) for r in reads] == [  # type: ignore[attr-defined]
        ("officer-7", "/api/v1/audit/events"), ("officer-7", "/api/v1/audit/events/0"),
        ("officer-7", "/api/v1/audit/head"), ("officer-7", "/api/v1/audit/verify")]
    assert reads[0].query == "patient=p-1"  # type: ignore[attr-defined]
    assert await audit.db[OUTBOX].count_documents({}) == 0
    assert await audit.db[store.ENTRIES].count_documents({}) == len(seeded)
    refused = await audit.client.get("/api/v1/audit/head",
                                     headers=audit.tokens.headers(roles=["patient"]))
    assert refused.status_code == 403
    assert len([r for r in caplog.records if r.getMessage() == "audit log read"]) == 4


async def test_a_third_party_can_recompute_hashes_from_the_api(
    audit: Audit, seeded: list[CloudEvent]
) -> None:
    """Only the documented definition, hashlib and rfc8785: no code of this service."""
    items = (await audit.get("/events", limit="200")).json()["items"]
    prev = "0" * 64
    for item in reversed(items):  # oldest first
        appended = datetime.fromisoformat(item["appended_at"])
        view = {"seq": item["seq"], "envelope": item["envelope"],
                "appended_at": appended.strftime("%Y-%m-%dT%H:%M:%S.")
                + f"{appended.microsecond // 1000:03d}Z"}
        digest = hashlib.sha256(prev.encode("ascii") + rfc8785.dumps(view)).hexdigest()
        assert (item["prev_hash"], item["hash"]) == (prev, digest)
        prev = digest
    assert (await audit.get("/head")).json()["hash"] == prev
