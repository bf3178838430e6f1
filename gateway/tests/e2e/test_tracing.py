"""One booking, one trace, across processes (issue 10 § 8): the spans every process of the
session's platform exported (``TRACES_FILE``: one JSON object per line, the SDK's
``ReadableSpan.to_json``) hold the chain client → gateway server span → gateway httpx
client span → appointment server span → the outbox relay's PRODUCER span → a CONSUMER
span in each consuming service, every parent where W3C Trace Context says it is.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import (
    BERLIN,
    User,
    create_doctor,
    ok,
    publish_availability,
    register_hospital,
    register_patient,
    traces_dir,
    weekly_hours,
)

TZ = ZoneInfo(BERLIN)
Span = dict[str, Any]


def exported_spans(workdir: Path, trace_id: str) -> list[Span]:
    """Every span of ``trace_id`` (32 hex digits) the platform's processes exported."""
    found: list[Span] = []
    for path in sorted(traces_dir(workdir).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if f'"0x{trace_id}"' in line:
                span = json.loads(line)
                span["file"] = path.name
                found.append(span)
    return found


def service_of(span: Span) -> str:
    return span["resource"]["attributes"]["service.name"].removeprefix("healthflow-")


def only(spans: list[Span], what: str, **where: Any) -> Span:
    matching = [s for s in spans if all(s.get(k) == v for k, v in where.items())]
    assert len(matching) == 1, (what, [(s["name"], s["kind"], service_of(s)) for s in spans])
    return matching[0]


async def book(api: httpx.AsyncClient, admin: User, traceparent: str) -> User:
    """A verified doctor with weekly hours, a patient, and the patient's booking sent
    with ``traceparent``; the patient."""
    hospital = await register_hospital(api, admin, f"Trace Klinik {uuid.uuid4().hex[:6]}",
                                       departments=["Cardiology"])
    doctor, _ = await create_doctor(
        api, admin, family=f"Spur{uuid.uuid4().hex[:5]}",
        affiliations=[{"hospital_id": hospital["id"],
                       "department_id": hospital["departments"]["Cardiology"]}])
    await publish_availability(api, doctor, weekly_hours(hospital["id"]))
    patient = await register_patient(api, "traced")
    day = datetime.now(TZ).date() + timedelta(days=8)
    while day.isoweekday() != 2:
        day += timedelta(days=1)
    slot = datetime(day.year, day.month, day.day, 9, 30, tzinfo=TZ)

    async def slot_offered() -> bool:
        response = await api.get("/api/v1/slots", headers=patient.headers, params={
            "doctor_id": doctor.id, "from": slot.isoformat(),
            "to": (slot + timedelta(hours=1)).isoformat()})
        return response.status_code == 200 and any(
            datetime.fromisoformat(s["start"]) == slot for s in response.json()["items"])

    await eventually(slot_offered, within=20, message="the slot never became free")
    # The test is the client, not a traced process: if an earlier test instrumented this
    # process's httpx, it would send a traceparent of its own instead of ours.
    with suppress_http_instrumentation():
        ok(await api.post(
            "/api/v1/appointments", headers=patient.headers | {"traceparent": traceparent},
            json={"doctor_id": doctor.id, "start": slot.isoformat(), "mode": "in_person"}),
           201)
    return patient


async def test_one_booking_is_one_trace_from_the_gateway_to_the_consumers(
        platform: RunningPlatform, admin: User) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    async with platform.client() as api:
        patient = await book(api, admin, f"00-{trace_id}-{caller_span}-01")

    consumers_expected = {"audit", "notification", "doctor", "patient"}

    def chain_exported() -> bool:
        # each process flushes on its own (every 200 ms): wait for every link
        exported = {(service_of(s), s["kind"]) for s in exported_spans(platform.workdir,
                                                                      trace_id)}
        return exported >= {("gateway", "SpanKind.SERVER"), ("gateway", "SpanKind.CLIENT"),
                            ("appointment", "SpanKind.SERVER"),
                            ("appointment", "SpanKind.PRODUCER"),
                            *((c, "SpanKind.CONSUMER") for c in consumers_expected)}

    await eventually(chain_exported, within=30,
                     message="the booking's spans were never all exported")
    spans = exported_spans(platform.workdir, trace_id)

    edge = only(spans, "gateway server span", kind="SpanKind.SERVER",
                name="POST /api/v1/appointments", parent_id=f"0x{caller_span}")
    assert service_of(edge) == "gateway"
    server = only([s for s in spans if service_of(s) == "appointment"],
                  "appointment server span", kind="SpanKind.SERVER",
                  name="POST /api/v1/appointments")
    hop = only([s for s in spans if s["context"]["span_id"] == server["parent_id"]],
               "gateway client span", kind="SpanKind.CLIENT",
               parent_id=edge["context"]["span_id"])
    assert service_of(hop) == "gateway" and hop["name"] == "POST"

    # the relay, later and in the background, continues the context the envelope recorded
    producer = only(spans, "relay's producer span", kind="SpanKind.PRODUCER",
                    name="publish appointment.booked")
    assert service_of(producer) == "appointment"
    assert producer["parent_id"] == server["context"]["span_id"]
    event_id = producer["attributes"]["messaging.message.id"]

    consumers = [s for s in spans if s["kind"] == "SpanKind.CONSUMER"
                 and s["name"] == "process appointment.booked"]
    assert {service_of(s) for s in consumers} >= consumers_expected
    for consumer in consumers:
        assert consumer["parent_id"] == producer["context"]["span_id"], consumer
        assert consumer["attributes"]["messaging.message.id"] == event_id
        assert [link["context"]["span_id"] for link in consumer["links"]] == [
            server["context"]["span_id"]]

    # database spans hang under the request and the deliveries, and hold command names only
    database = [s for s in spans if s["attributes"].get("db.system") == "mongodb"]
    # (not audit's: its group commit may append this event in another delivery's task)
    assert {service_of(s) for s in database} >= {"appointment", "doctor", "patient",
                                                 "notification"}
    for span in database:
        assert span["attributes"]["db.statement"] == span["name"].rsplit(".", 1)[1], span
    # no PHI anywhere in the trace: not the patient's email, name or phone
    exported = json.dumps([s["attributes"] for s in spans])
    assert patient.email not in exported and "Traced Example" not in exported
    assert "+447400" not in exported
