"""The hospital API against a real MongoDB-protocol server, through the app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.inprocess import InProcessTransport
from healthflow.common.events.transport import Subscription
from healthflow.common.mongo import Document, get_database
from healthflow.common.service import ServiceRuntime
from healthflow.devkit.testing import TokenFactory, running_app
from healthflow.hospital.app import create_app
from healthflow.hospital.settings import Settings


@dataclass
class HospitalApp:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    tokens: TokenFactory
    received: list[CloudEvent]
    """Every event a catch-all subscriber on the same in-process transport received."""

    @property
    def db(self) -> AsyncDatabase[Document]:
        return self.runtime.db

    def as_(self, sub: str, *roles: str) -> dict[str, str]:
        return self.tokens.headers(sub, roles=list(roles))

    async def outbox(self, type_: str) -> list[Document]:
        """Recorded events of ``type_``, pending or sent, oldest first."""
        return await recorded(self.db, {"type": type_})

    async def event_count(self, query: dict[str, Any] | None = None) -> int:
        return len(await recorded(self.db, query or {}))


OUTBOX_COLLECTIONS = ("outbox", "outbox_sent")
"""Where a service's recorded events live: pending ones, and (when the relay archives
them) the sent ones."""


async def recorded(db: AsyncDatabase[Document], query: dict[str, Any]) -> list[Document]:
    found: dict[str, Document] = {}  # by event id: the relay copies, then deletes
    for name in OUTBOX_COLLECTIONS:
        found.update({d["_id"]: d for d in await db[name].find(query).to_list()})
    return sorted(found.values(), key=lambda d: d["created_at"])


def hospital_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Charité Mitte",
        "address": {"lines": ["Charitéplatz 1"], "city": "Berlin", "postal_code": "10117",
                    "country": "DE"},
        "contacts": [{"system": "phone", "value": "+49 30 450 50"}],
        "position": {"type": "Point", "coordinates": [13.3777, 52.5251]},
        "time_zone": "Europe/Berlin",
        "services": ["cardiology", "radiology"],
    }
    body.update(overrides)
    return body


@pytest.fixture
async def hospital_app(mongodb_url: str, unique_name: str,
                       tokens: TokenFactory) -> AsyncIterator[HospitalApp]:
    transport = InProcessTransport(get_database(mongodb_url, f"{unique_name}_platform"))
    settings = Settings(mongodb_url=mongodb_url, mongodb_database=f"{unique_name}_hospital",
                        transport="inprocess")
    app = create_app(settings, transport)
    app.state.verifier = tokens.verifier()
    received: list[CloudEvent] = []

    async def record(event: CloudEvent) -> None:
        received.append(event)

    try:
        async with running_app(app) as client:
            await transport.subscribe(
                Subscription(service=f"{unique_name}-recorder", patterns=["#"], handler=record)
            )
            yield HospitalApp(client, app.state.runtime, tokens, received)
    finally:
        await transport.close()


async def eventually(predicate: Callable[[], Awaitable[bool]], *, within: float = 10.0,
                     what: str = "condition") -> None:
    """Poll ``predicate`` every 50 ms; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)

ADMIN = "admin-1"
REP = "rep-1"


async def register(h: HospitalApp, sub: str = REP, **overrides: Any) -> dict[str, Any]:
    response = await h.client.post("/api/v1/hospitals", json=hospital_body(**overrides),
                                   headers=h.as_(sub, "doctor"))
    assert response.status_code == 201, response.text
    return response.json()


async def verify(h: HospitalApp, hospital_id: str) -> dict[str, Any]:
    response = await h.client.post(f"/api/v1/hospitals/{hospital_id}/verify",
                                   headers=h.as_(ADMIN, "admin"))
    assert response.status_code == 200, response.text
    return response.json()


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


async def test_registration_is_pending_and_recorded_in_the_outbox(hospital_app: HospitalApp):
    h = hospital_app
    created = await register(h)
    assert created["status"] == "pending"
    assert created["registered_by"] == REP
    assert created["position"] == {"type": "Point", "coordinates": [13.3777, 52.5251]}
    [record] = await h.outbox("hospital.registered")
    data = record["envelope"]["data"]
    assert data == {
        "hospital_id": created["id"], "version": 1, "name": "Charité Mitte", "city": "Berlin",
        "country": "DE", "time_zone": "Europe/Berlin", "status": "pending",
        "services": ["cardiology", "radiology"], "registered_by": REP,
        "latitude": 52.5251, "longitude": 13.3777,
    }
    assert record["envelope"]["subject"] == f"hospital/{created['id']}"
    assert record["envelope"]["actor"] == REP


async def test_events_flow_through_the_transport_and_the_outbox_drains(
    hospital_app: HospitalApp,
):
    h = hospital_app
    hid = (await register(h))["id"]
    await verify(h, hid)

    async def delivered() -> bool:
        types = sorted(e.type for e in h.received if e.subject == f"hospital/{hid}")
        return types == ["hospital.registered", "hospital.verified"]

    await eventually(delivered, what="hospital events on the transport")

    async def drained() -> bool:
        return await h.db["outbox"].count_documents({"status": {"$ne": "sent"}}) == 0

    await eventually(drained, what="the outbox to be marked sent")
    verified = next(e for e in h.received if e.type == "hospital.verified")
    assert verified.source == "/healthflow/hospital"
    assert verified.actor == ADMIN
    assert verified.dataschema == "urn:healthflow:event:hospital.verified:v1"


async def test_unverified_hospital_is_visible_only_to_registrant_and_admins(
    hospital_app: HospitalApp,
):
    h = hospital_app
    hid = (await register(h))["id"]
    url = f"/api/v1/hospitals/{hid}"
    assert (await h.client.get(url, headers=h.as_(REP, "doctor"))).status_code == 200
    assert (await h.client.get(url, headers=h.as_(ADMIN, "admin"))).status_code == 200
    assert_problem(await h.client.get(url), 404)
    assert_problem(await h.client.get(url, headers=h.as_("other", "doctor")), 404)
    assert_problem(await h.client.get(f"{url}/departments"), 404)
    await verify(h, hid)
    assert (await h.client.get(url)).json()["status"] == "verified"


async def test_public_listing_shows_only_verified(hospital_app: HospitalApp):
    h = hospital_app
    verified = await register(h, name="Verified General")
    await register(h, name="Pending General")
    rejected = await register(h, name="Rejected General")
    await verify(h, verified["id"])
    r = await h.client.post(f"/api/v1/hospitals/{rejected['id']}/reject",
                            json={"reason": "licence document unreadable"},
                            headers=h.as_(ADMIN, "admin"))
    assert r.status_code == 200 and r.json()["rejection_reason"] == "licence document unreadable"

    public = (await h.client.get("/api/v1/hospitals")).json()
    assert [x["name"] for x in public["items"]] == ["Verified General"]
    assert public["next_cursor"] is None
    assert_problem(await h.client.get("/api/v1/hospitals?status=pending"), 403)
    assert_problem(await h.client.get("/api/v1/hospitals?status=all",
                                      headers=h.as_(REP, "doctor")), 403)
    admin = h.as_(ADMIN, "admin")
    pending = (await h.client.get("/api/v1/hospitals?status=pending", headers=admin)).json()
    assert [x["name"] for x in pending["items"]] == ["Pending General"]
    everything = (await h.client.get("/api/v1/hospitals?status=all", headers=admin)).json()
    assert [x["name"] for x in everything["items"]] == [
        "Pending General", "Rejected General", "Verified General"]


async def test_verification_state_machine_through_the_api(hospital_app: HospitalApp):
    h = hospital_app
    admin = h.as_(ADMIN, "admin")
    hid = (await register(h))["id"]
    verified = await verify(h, hid)
    assert verified["decided_at"] is not None
    again = assert_problem(await h.client.post(f"/api/v1/hospitals/{hid}/verify",
                                               headers=admin), 409)
    assert again["current_status"] == "verified"
    assert_problem(await h.client.post(f"/api/v1/hospitals/{hid}/reject",
                                       json={"reason": "too late"}, headers=admin), 409)
    [event] = await h.outbox("hospital.verified")
    assert event["envelope"]["data"]["version"] == 2
    assert event["envelope"]["data"]["status"] == "verified"
    assert await h.outbox("hospital.rejected") == []

    other = (await register(h, name="Other"))["id"]
    assert_problem(await h.client.post(f"/api/v1/hospitals/{other}/reject", json={},
                                       headers=admin), 422)
    r = await h.client.post(f"/api/v1/hospitals/{other}/reject",
                            json={"reason": "not a hospital"}, headers=admin)
    assert r.json()["status"] == "rejected"
    assert_problem(await h.client.post(f"/api/v1/hospitals/{other}/verify", headers=admin),
                   409)
    [rejected] = await h.outbox("hospital.rejected")
    assert rejected["envelope"]["data"]["reason"] == "not a hospital"
    assert_problem(await h.client.post("/api/v1/hospitals/nope/verify", headers=admin), 404)


async def test_every_mutating_route_refuses_the_wrong_role(hospital_app: HospitalApp):
    h = hospital_app
    hid = (await register(h))["id"]
    await verify(h, hid)
    for role in ("patient", "nurse", "patient_care"):
        who = h.as_("someone", role)
        calls = [
            ("/api/v1/hospitals", hospital_body()),
            (f"/api/v1/hospitals/{hid}/verify", None),
            (f"/api/v1/hospitals/{hid}/reject", {"reason": "because"}),
            (f"/api/v1/hospitals/{hid}/departments", {"name": "ICU"}),
            (f"/api/v1/hospitals/{hid}/staff", {"user_id": "u", "staff_role": "nurse"}),
        ]
        for url, body in calls:
            assert_problem(await h.client.post(url, json=body, headers=who), 403)
    # a hospital representative (doctor role) may register but not verify
    assert_problem(await h.client.post(f"/api/v1/hospitals/{hid}/verify",
                                       headers=h.as_(REP, "doctor")), 403)
    assert_problem(await h.client.post("/api/v1/hospitals", json=hospital_body()), 401)
    assert_problem(await h.client.get(f"/api/v1/hospitals/{hid}/staff",
                                      headers=h.as_("someone", "patient")), 403)
    assert await h.db["departments"].count_documents({}) == 0
    assert await h.db["staff"].count_documents({}) == 0


async def test_departments_and_staff_refuse_the_wrong_owner(hospital_app: HospitalApp):
    h = hospital_app
    hid = (await register(h))["id"]
    stranger = h.as_("other-rep", "doctor")
    # pending: the stranger cannot even see it
    assert_problem(await h.client.post(f"/api/v1/hospitals/{hid}/departments",
                                       json={"name": "ICU"}, headers=stranger), 404)
    await verify(h, hid)
    assert_problem(await h.client.post(f"/api/v1/hospitals/{hid}/departments",
                                       json={"name": "ICU"}, headers=stranger), 403)
    assert_problem(await h.client.post(f"/api/v1/hospitals/{hid}/staff",
                                       json={"user_id": "u1", "staff_role": "nurse"},
                                       headers=stranger), 403)
    assert_problem(await h.client.get(f"/api/v1/hospitals/{hid}/staff", headers=stranger), 403)
    assert await h.db["departments"].count_documents({}) == 0
    assert await h.event_count({"type": "department.created"}) == 0


async def test_departments_and_staff(hospital_app: HospitalApp):
    h = hospital_app
    rep = h.as_(REP, "doctor")
    hid = (await register(h))["id"]
    r = await h.client.post(f"/api/v1/hospitals/{hid}/departments",
                            json={"name": "Cardiology", "services": ["Cardiology"]}, headers=rep)
    assert r.status_code == 201, r.text
    dep = r.json()
    assert dep["services"] == ["cardiology"]
    assert_problem(await h.client.post(f"/api/v1/hospitals/{hid}/departments",
                                       json={"name": " CARDIOLOGY "}, headers=rep), 409)
    # admins manage any hospital
    r = await h.client.post(f"/api/v1/hospitals/{hid}/departments", json={"name": "Radiology"},
                            headers=h.as_(ADMIN, "admin"))
    assert r.status_code == 201
    listed = (await h.client.get(f"/api/v1/hospitals/{hid}/departments", headers=rep)).json()
    assert [d["name"] for d in listed] == ["Cardiology", "Radiology"]

    staff = {"user_id": "nurse-7", "department_id": dep["id"], "staff_role": "nurse"}
    r = await h.client.post(f"/api/v1/hospitals/{hid}/staff", json=staff, headers=rep)
    assert r.status_code == 201, r.text
    assert r.json()["assigned_by"] == REP
    assert_problem(await h.client.post(f"/api/v1/hospitals/{hid}/staff", json=staff,
                                       headers=rep), 409)
    unknown = assert_problem(await h.client.post(
        f"/api/v1/hospitals/{hid}/staff",
        json={**staff, "department_id": "no-such-department"}, headers=rep), 422)
    assert unknown["errors"][0]["location"] == "body.department_id"
    assert_problem(await h.client.post(f"/api/v1/hospitals/{hid}/staff",
                                       json={**staff, "staff_role": "admin"}, headers=rep), 422)
    members = (await h.client.get(f"/api/v1/hospitals/{hid}/staff", headers=rep)).json()
    assert [(m["user_id"], m["staff_role"]) for m in members] == [("nurse-7", "nurse")]

    [created] = await h.outbox("staff.assigned")
    assert created["envelope"]["data"] == {
        "hospital_id": hid, "department_id": dep["id"], "user_id": "nurse-7",
        "staff_role": "nurse", "membership_id": members[0]["id"]}
    assert len(await h.outbox("department.created")) == 2


async def test_removing_staff_ends_the_membership_with_staff_removed(hospital_app: HospitalApp):
    h = hospital_app
    rep = h.as_(REP, "doctor")
    hid = (await register(h))["id"]
    staff = {"user_id": "nurse-7", "staff_role": "nurse"}
    first = (await h.client.post(f"/api/v1/hospitals/{hid}/staff", json=staff,
                                 headers=rep)).json()
    url = f"/api/v1/hospitals/{hid}/staff/{first['id']}"
    # a pending hospital is hidden from a stranger: 404, as for the other staff routes
    assert_problem(await h.client.delete(url, headers=h.as_("stranger", "doctor")), 404)
    assert (await h.client.delete(url, headers=rep)).status_code == 204
    assert_problem(await h.client.delete(url, headers=rep), 404)
    assert (await h.client.get(f"/api/v1/hospitals/{hid}/staff", headers=rep)).json() == []
    [removed] = await h.outbox("staff.removed")
    data = removed["envelope"]["data"]
    assert {k: v for k, v in data.items() if k != "removed_at"} == {
        "hospital_id": hid, "department_id": None, "user_id": "nurse-7",
        "staff_role": "nurse", "membership_id": first["id"]}
    # assigned again: a new membership, never the removed one's id
    again = await h.client.post(f"/api/v1/hospitals/{hid}/staff", json=staff, headers=rep)
    assert again.status_code == 201 and again.json()["id"] != first["id"]


async def test_rejected_hospital_takes_no_departments(hospital_app: HospitalApp):
    h = hospital_app
    hid = (await register(h))["id"]
    await h.client.post(f"/api/v1/hospitals/{hid}/reject", json={"reason": "duplicate entry"},
                        headers=h.as_(ADMIN, "admin"))
    assert_problem(await h.client.post(f"/api/v1/hospitals/{hid}/departments",
                                       json={"name": "ICU"}, headers=h.as_(REP, "doctor")), 409)


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"beds": 300}, "body.beds"),
        ({"time_zone": "Europe/Atlantis"}, "body.time_zone"),
        ({"time_zone": "localtime"}, "body.time_zone"),
        ({"address": {"city": "Berlin", "country": "Germany"}}, "body.address.country"),
        ({"address": {"country": "DE"}}, "body.address.city"),
        ({"position": {"type": "Point", "coordinates": [52.5, 191.0]}},
         "body.position.coordinates.1"),
        ({"services": ["heart surgery"]}, "body.services.0"),
        ({"contacts": [{"system": "pigeon", "value": "x"}]}, "body.contacts.0.system"),
        ({"name": "   "}, "body.name"),
    ],
)
async def test_bad_input_is_a_precise_problem_and_writes_nothing(
    hospital_app: HospitalApp, change: dict[str, Any], location: str
):
    h = hospital_app
    response = await h.client.post("/api/v1/hospitals", json=hospital_body(**change),
                                   headers=h.as_(REP, "doctor"))
    problem = assert_problem(response, 422)
    assert problem["type"].endswith("/validation")
    assert location in [e["location"] for e in problem["errors"]]
    assert await h.db["hospitals"].count_documents({}) == 0
    assert await h.event_count() == 0


async def test_filters_pagination_and_index_use(hospital_app: HospitalApp):
    h = hospital_app
    specs = [("Alpha", "Berlin", ["cardiology"]), ("beta", "berlin", ["radiology"]),
             ("Gamma", "Munich", ["cardiology", "radiology"]), ("Delta", "Berlin", []),
             ("Epsilon", "BERLIN", ["cardiology"])]
    for name, city, services in specs:
        created = await register(h, name=name, services=services,
                                 address={"city": city, "country": "DE"})
        await verify(h, created["id"])
    await register(h, name="Aardvark pending", address={"city": "Berlin", "country": "DE"})

    async def names(query: str) -> list[str]:
        r = await h.client.get(f"/api/v1/hospitals?{query}")
        assert r.status_code == 200, r.text
        return [x["name"] for x in r.json()["items"]]

    assert await names("city=berlin") == ["Alpha", "beta", "Delta", "Epsilon"]
    assert await names("service=Cardiology") == ["Alpha", "Epsilon", "Gamma"]
    assert await names("city=Berlin&service=radiology") == ["beta"]

    seen: list[str] = []
    cursor = None
    for _ in range(5):
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await h.client.get(f"/api/v1/hospitals?{query}")).json()
        seen += [x["name"] for x in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["Alpha", "beta", "Delta", "Epsilon", "Gamma"]
    assert_problem(await h.client.get("/api/v1/hospitals?cursor=not-a-cursor"), 400)

    from healthflow.hospital import store

    queries = [
        store.listing_query(statuses=["verified"], city=None, service=None),
        store.listing_query(statuses=["verified"], city="Berlin", service=None),
        store.listing_query(statuses=["verified"], city=None, service="cardiology"),
        store.listing_query(statuses=["verified"], city="Berlin", service="cardiology"),
        store.listing_query(statuses=store.ALL_STATUSES, city="Berlin", service=None),
        store.listing_query(statuses=store.ALL_STATUSES, city=None, service=None),
    ]
    for query, index in queries:
        query["sort_key"] = {"$gt": "b"}  # as a cursor adds it
        plan = await h.db["hospitals"].find(query).sort("sort_key", 1).hint(index).limit(
            3).explain()
        stages = _stages(plan["queryPlanner"]["winningPlan"])
        assert "IXSCAN" in stages and "COLLSCAN" not in stages, (query, stages)
        # the scan stays inside the index's bounds: no more keys than matching documents + 1
        stats = plan.get("executionStats", {})
        if "totalDocsExamined" in stats:
            matching = await h.db["hospitals"].count_documents(query)
            assert stats["totalDocsExamined"] <= max(matching, 1) * 2, (query, stats)


def _stages(plan: dict[str, Any]) -> list[str]:
    found = [plan.get("stage", "")]
    for key in ("inputStage", "outerStage", "innerStage"):
        if key in plan:
            found += _stages(plan[key])
    for child in plan.get("inputStages", []):
        found += _stages(child)
    return found


async def test_public_profiles_name_no_registrant(hospital_app: HospitalApp):
    h = hospital_app
    hid = (await register(h))["id"]
    await verify(h, hid)
    public = (await h.client.get(f"/api/v1/hospitals/{hid}")).json()
    assert public["registered_by"] is None
    listed = (await h.client.get("/api/v1/hospitals")).json()["items"]
    assert [item["registered_by"] for item in listed if item["id"] == hid] == [None]
    patient = (await h.client.get(f"/api/v1/hospitals/{hid}",
                                  headers=h.as_("someone", "patient"))).json()
    assert patient["registered_by"] is None
    own = (await h.client.get(f"/api/v1/hospitals/{hid}", headers=h.as_(REP, "doctor")))
    assert own.json()["registered_by"] == REP

