"""The questions compliance officers ask, over HTTP against a real database: everything
user Y did in a period, every privilege change, every failed-login burst."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from healthflow.common.events.envelope import CloudEvent

from .test_api import is_problem

if TYPE_CHECKING:
    from ..conftest import Audit


async def test_everything_a_user_did_in_a_period(
        audit: Audit, make_event: Callable[..., CloudEvent],
        at: Callable[[int], datetime]) -> None:
    await audit.deliver(*(make_event("patient.updated", actor=actor, when=at(minute))
                          for actor, minute in (("u-y", 0), ("u-y", 5), ("u-z", 6),
                                                ("u-y", 9), ("u-y", 30))))
    page = (await audit.get("/events", actor="u-y", **{"from": "2026-11-21T10:05:00Z",
                                                        "to": "2026-11-21T10:30:00Z"})).json()
    assert [(e["actor"], e["time"][11:16]) for e in page["items"]] == [
        ("u-y", "10:09"), ("u-y", "10:05")]


async def test_every_privilege_change(audit: Audit, make_event: Callable[..., CloudEvent],
                                      at: Callable[[int], datetime]) -> None:
    await audit.deliver(
        make_event("user.role_changed", subject="u-9", actor="admin-1", patientid=None,
                   when=at(1), user_id="u-9", role="doctor", change="assigned"),
        make_event("staff.assigned", subject="u-9", actor="admin-1", patientid=None,
                   when=at(2), user_id="u-9", staff_role="doctor"),
        make_event("patient.updated", when=at(3)),
        make_event("auth.login_failed", subject="u-9", actor="u-9", patientid=None,
                   when=at(4), user_id="u-9", reason="bad_password"))
    page = (await audit.get("/events", category="privilege-change")).json()
    assert [e["type"] for e in page["items"]] == ["staff.assigned", "user.role_changed"]
    # a category and a type together: that type if it is in the category, else nothing
    assert len((await audit.get("/events", category="privilege-change",
                                type="staff.assigned")).json()["items"]) == 1
    assert (await audit.get("/events", category="privilege-change",
                            type="patient.updated")).json()["items"] == []
    csv = (await audit.get("/report/csv", category="privilege-change")).text
    assert csv.count("\r\n") == 3  # header and the two changes
    assert is_problem(await audit.get("/events", category="everything"), 422)


async def test_failed_login_bursts_per_account_and_per_address(
        audit: Audit, make_event: Callable[..., CloudEvent],
        at: Callable[[int], datetime]) -> None:
    def failure(user: str, ip: str, minute: int) -> CloudEvent:
        return make_event("auth.login_failed", subject=user, actor=user, patientid=None,
                          when=at(minute), user_id=user, reason="bad_password",
                          client_ip=ip, client_id="web")

    await audit.deliver(*(failure("u-a", "10.0.0.1", m) for m in (0, 1, 2, 3, 4)),
                        *(failure("u-b", "10.0.0.1", m) for m in (5, 6)),
                        failure("u-c", "10.0.0.2", 40))
    bursts = (await audit.get("/login-failures/bursts")).json()
    assert [(b["key"], b["count"], b["first"][11:16], b["last"][11:16]) for b in bursts] == [
        ("u-a", 5, "10:00", "10:04")]
    by_address = (await audit.get("/login-failures/bursts", by="client_ip", threshold=3,
                                  gap=120)).json()
    assert [(b["key"], b["count"]) for b in by_address] == [("10.0.0.1", 7)]
    assert len(by_address[0]["seqs"]) == 7
    period = {"from": "2026-11-21T10:02:00Z", "to": "2026-11-21T11:00:00Z"}
    assert (await audit.get("/login-failures/bursts", **period)).json() == []
    assert is_problem(await audit.get("/login-failures/bursts", threshold=1), 422)
    assert is_problem(await audit.get("/login-failures/bursts",
                                      **{"from": "2026-11-21T11:00:00Z",
                                         "to": "2026-11-21T10:00:00Z"}), 422)
    denied = await audit.client.get("/api/v1/audit/login-failures/bursts",
                                    headers=audit.tokens.headers(roles=["doctor"]))
    assert is_problem(denied, 403)


async def test_break_the_glass_is_found_by_category_and_marked_for_review(
        audit: Audit, make_event: Callable[..., CloudEvent],
        at: Callable[[int], datetime]) -> None:
    """The emergency grant and the reads under it carry purposeOfEvent ETREAT and the
    review tag; an ordinary treating doctor's read carries neither."""
    await audit.deliver(
        make_event("record.emergency_access_granted", subject="patient/p-1", actor="u-er",
                   when=at(1), source="/healthflow/records", grant_id="g-1", patient_id="p-1",
                   accessor_id="u-er", accessor_roles=["doctor"],
                   granted_at="2026-11-21T10:01:00Z", expires_at="2026-11-21T11:01:00Z"),
        make_event("record.accessed", subject="patient/p-1", actor="u-er", when=at(2),
                   source="/healthflow/records", patient_id="p-1", accessor_id="u-er",
                   accessor_role="break_the_glass", accessor_roles=["doctor"],
                   scope="export", purpose="emergency", grant_id="g-1"),
        make_event("record.accessed", subject="patient/p-1", actor="u-gp", when=at(3),
                   source="/healthflow/records", patient_id="p-1", accessor_id="u-gp",
                   accessor_role="treating_doctor", accessor_roles=["doctor"],
                   scope="encounter"))
    page = (await audit.get("/events", category="break-the-glass")).json()
    assert [(e["type"], e["actor"]) for e in page["items"]] == [
        ("record.emergency_access_granted", "u-er")]
    bundle = (await audit.get("/report/fhir", patient="p-1")).json()
    marks = [(e["subtype"][0]["code"], e["agent"][0].get("type", {}).get("text"),
              [c["code"] for p in e.get("purposeOfEvent", []) for c in p["coding"]],
              [t["code"] for t in e.get("meta", {}).get("tag", [])])
             for e in (entry["resource"] for entry in bundle["entry"])]
    assert marks == [
        ("record.emergency_access_granted", None, ["ETREAT"], ["review"]),
        ("record.accessed", "break_the_glass", ["ETREAT"], ["review"]),
        ("record.accessed", "treating_doctor", [], [])]
