"""Orders over their life (FHIR request-status): the work list sorted and paged by the
database, cancelling (revoked), completion when the report is signed, who may report,
and the access events every non-patient view publishes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from healthflow.common.events.outbox import recorded_events
from healthflow.contracts.records import EncounterStarted
from healthflow.devkit.dicom import radiograph
from healthflow.xray import service

from .conftest import DICOM, DOCTOR, PATIENT, RADIOGRAPHER, ordered

ORDERS = "/api/v1/imaging/orders"


async def outbox(app: Any, event_type: str) -> list[dict[str, Any]]:
    """The payloads of the ``event_type`` events recorded, oldest first."""
    events = await recorded_events(app.state.runtime.db, {"type": event_type})
    return [dict(e.data or {}) for e in events]


async def upload(http: httpx.AsyncClient, tokens: Any, order: dict[str, Any]
                 ) -> httpx.Response:
    return await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                           content=radiograph(PATIENT), headers=tokens.headers(
                               RADIOGRAPHER, ("radiographer",)) | DICOM)


async def test_the_work_list_puts_stat_orders_first_across_pages(xray, tokens) -> None:
    """Five routine orders, then two stat ones: with pages of three, the stat orders lead
    the first page (the database sorts before it limits), and paging returns every
    active order once, in (priority, age) order."""
    http, app = xray
    routine = [await ordered(http, app, tokens, priority="routine") for _ in range(5)]
    stat = [await ordered(http, app, tokens, priority="stat") for _ in range(2)]
    radiographer = tokens.headers(RADIOGRAPHER, ("radiographer",))
    first = (await http.get(ORDERS, params={"limit": 3}, headers=radiographer)).json()
    assert [o["id"] for o in first["items"]] == [o["id"] for o in stat + routine[:1]]
    seen, cursor = [], None
    while True:
        page = (await http.get(ORDERS, params={"limit": 3} | (
            {"cursor": cursor} if cursor else {}), headers=radiographer)).json()
        seen += [o["id"] for o in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == [o["id"] for o in stat + routine]
    bad = await http.get(ORDERS, params={"cursor": "nonsense"}, headers=radiographer)
    assert bad.status_code == 400
    listed = await outbox(app, "xray.accessed")
    assert {(e["scope"], e["accessor_role"]) for e in listed} == {
        ("worklist", "staff")}
    assert listed[0]["accessor_roles"] == ["radiographer"]


async def test_the_ordering_doctor_cancels_an_active_order_and_it_takes_no_images(
        xray, tokens) -> None:
    http, app = xray
    order = await ordered(http, app, tokens)
    url = f"{ORDERS}/{order['id']}/cancel"
    other = await http.post(url, headers=tokens.headers("dr-2", ("doctor",)))
    assert other.status_code == 403 and "not-the-requester" in other.text
    patient = await http.post(url, headers=tokens.headers(PATIENT, ("patient",)))
    assert patient.status_code == 403
    revoked = await http.post(url, headers=tokens.headers(DOCTOR, ("doctor",)))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked", revoked.text
    again = await http.post(url, headers=tokens.headers(DOCTOR, ("doctor",)))
    assert again.status_code == 409 and "order-closed" in again.text
    refused = await upload(http, tokens, order)
    assert refused.status_code == 409 and "order-closed" in refused.text
    assert await app.state.blobs.keys() == []
    work = await http.get(ORDERS, headers=tokens.headers(RADIOGRAPHER, ("radiographer",)))
    assert work.json()["items"] == []
    [event] = await outbox(app, "xray.revoked")
    assert event["order_id"] == order["id"]
    unknown = await http.post(f"{ORDERS}/nope/cancel", headers=tokens.headers(
        DOCTOR, ("doctor",)))
    assert unknown.status_code == 404


async def test_signing_the_report_completes_the_order_and_strangers_may_not_report(
        xray, tokens) -> None:
    """The order stays active while images arrive; a doctor with no care relationship
    may neither draft nor sign; a doctor who treats the patient drafts; the ordering
    doctor's signed report completes the order, which then takes no images."""
    http, app = xray
    order = await ordered(http, app, tokens)
    study = (await upload(http, tokens, order)).json()
    doctor = tokens.headers(DOCTOR, ("doctor",))
    assert (await http.get(f"{ORDERS}/{order['id']}", headers=doctor)).json()[
        "status"] == "active"
    url = f"/api/v1/imaging/studies/{study['id']}/report"
    text = {"findings": "Clear lungs.", "impression": "Normal."}
    stranger = tokens.headers("dr-9", ("doctor",))
    for method, path, body in (("PUT", url, text), ("POST", f"{url}/sign", None)):
        refused = await http.request(method, path, headers=stranger, json=body)
        assert refused.status_code == 403 and "not-treating" in refused.text, path
    colleague = "dr-3"  # conducted an encounter with the patient: a care relationship
    started = EncounterStarted(encounter_id=str(uuid.uuid4()), patient_id=PATIENT,
                               practitioner_id=colleague, appointment_id=None,
                               encounter_class="AMB", started_at=datetime.now(UTC))
    await app.state.runtime.transact(lambda uow: service.encounter_started(uow, started))
    drafted = await http.put(url, headers=tokens.headers(colleague, ("doctor",)), json=text)
    assert drafted.status_code == 200, drafted.text
    assert (await http.post(f"{url}/sign", headers=doctor)).status_code == 403  # not author
    signed = await http.post(f"{url}/sign", headers=tokens.headers(colleague, ("doctor",)))
    assert signed.status_code == 200, signed.text
    after = await http.get(f"{ORDERS}/{order['id']}", headers=doctor)
    assert after.json()["status"] == "completed"
    late = await upload(http, tokens, order)
    assert late.status_code == 409 and "order-closed" in late.text


async def test_every_view_but_the_patients_own_publishes_an_access_event(xray,
                                                                          tokens) -> None:
    http, app = xray
    order = await ordered(http, app, tokens)
    study = (await upload(http, tokens, order)).json()
    instance = study["series"][0]["instances"][0]
    patient = tokens.headers(PATIENT, ("patient",))
    for path in (f"{ORDERS}/{order['id']}", f"/api/v1/imaging/studies/{study['id']}",
                 instance["preview"], instance["file"]):
        assert (await http.get(path, headers=patient)).status_code == 200, path
    assert await outbox(app, "xray.accessed") == []
    radiographer = tokens.headers(RADIOGRAPHER, ("radiographer",))
    assert (await http.get(f"{ORDERS}/{order['id']}", headers=radiographer)).status_code == 200
    doctor = tokens.headers(DOCTOR, ("doctor",))
    for path in (f"/api/v1/imaging/studies/{study['id']}", instance["preview"],
                 instance["file"]):
        assert (await http.get(path, headers=doctor)).status_code == 200, path
    seen = [(e["accessor_id"], e["accessor_role"], e["scope"])
            for e in await outbox(app, "xray.accessed")]
    assert seen == [(RADIOGRAPHER, "staff", "order"), (DOCTOR, "treating_doctor", "study"),
                    (DOCTOR, "treating_doctor", "preview"),
                    (DOCTOR, "treating_doctor", "file")]


async def test_the_report_of_a_revoked_order_is_not_signed(xray, tokens) -> None:
    """A draft written before the order was cancelled stays a draft: signing it is 409
    order-closed (problem+json), the order stays revoked and no xray.reported is sent."""
    http, app = xray
    order = await ordered(http, app, tokens)
    study = (await upload(http, tokens, order)).json()
    doctor = tokens.headers(DOCTOR, ("doctor",))
    url = f"/api/v1/imaging/studies/{study['id']}/report"
    drafted = await http.put(url, headers=doctor, json={"findings": "Clear lungs.",
                                                        "impression": "Normal."})
    assert drafted.status_code == 200, drafted.text
    cancelled = await http.post(f"{ORDERS}/{order['id']}/cancel", headers=doctor)
    assert cancelled.status_code == 200, cancelled.text
    refused = await http.post(f"{url}/sign", headers=doctor)
    assert refused.status_code == 409 and "order-closed" in refused.text, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert (await http.get(url, headers=doctor)).json()["status"] == "preliminary"
    after = await http.get(f"{ORDERS}/{order['id']}", headers=doctor)
    assert after.json()["status"] == "revoked"
    assert await outbox(app, "xray.reported") == []


async def test_every_study_of_one_order_is_signed_and_each_patient_notice_sent(
        xray, tokens) -> None:
    """One order may hold several studies (here two Study Instance UIDs from the
    modality). Signing the first completes the order; the second is signed too (it was
    409 order-closed for ever) and each sends its own xray.reported."""
    http, app = xray
    order = await ordered(http, app, tokens)
    first, second = [(await upload(http, tokens, order)).json() for _ in range(2)]
    assert first["id"] != second["id"]
    doctor = tokens.headers(DOCTOR, ("doctor",))
    text = {"findings": "Clear lungs.", "impression": "Normal."}
    for study in (first, second):
        url = f"/api/v1/imaging/studies/{study['id']}/report"
        assert (await http.put(url, headers=doctor, json=text)).status_code == 200
        signed = await http.post(f"{url}/sign", headers=doctor)
        assert signed.status_code == 200, signed.text
        assert signed.json()["status"] == "final"
        after = await http.get(f"{ORDERS}/{order['id']}", headers=doctor)
        assert after.json()["status"] == "completed"
    reported = await outbox(app, "xray.reported")
    assert [(e["study_id"], e["order_id"]) for e in reported] == [
        (first["id"], order["id"]), (second["id"], order["id"])]


async def test_the_ordering_doctor_takes_over_a_colleagues_draft_audited(
        xray, tokens) -> None:
    """A treating colleague drafting first no longer locks the ordering doctor out: the
    requester's write takes the draft over (xray.report_draft_replaced for the audit
    log), the colleague may then no longer edit it, and a third doctor never may."""
    http, app = xray
    order = await ordered(http, app, tokens)
    study = (await upload(http, tokens, order)).json()
    url = f"/api/v1/imaging/studies/{study['id']}/report"
    for colleague in ("dr-3", "dr-4"):
        started = EncounterStarted(encounter_id=str(uuid.uuid4()), patient_id=PATIENT,
                                   practitioner_id=colleague, appointment_id=None,
                                   encounter_class="AMB", started_at=datetime.now(UTC))
        await app.state.runtime.transact(
            lambda uow, s=started: service.encounter_started(uow, s))
    colleague = tokens.headers("dr-3", ("doctor",))
    drafted = await http.put(url, headers=colleague, json={
        "findings": "Colleague's words.", "impression": "Maybe."})
    assert drafted.status_code == 200 and drafted.json()["author_id"] == "dr-3"
    third = await http.put(url, headers=tokens.headers("dr-4", ("doctor",)), json={
        "findings": "Third.", "impression": "Third."})
    assert third.status_code == 403 and "not-the-author" in third.text
    assert await outbox(app, "xray.report_draft_replaced") == []

    doctor = tokens.headers(DOCTOR, ("doctor",))
    taken = await http.put(url, headers=doctor, json={"findings": "Clear lungs.",
                                                      "impression": "Normal."})
    assert taken.status_code == 200, taken.text
    assert (taken.json()["author_id"], taken.json()["findings"]) == (DOCTOR, "Clear lungs.")
    replaced = await outbox(app, "xray.report_draft_replaced")
    assert [(e["replaced_author_id"], e["author_id"], e["report_id"]) for e in replaced] == [
        ("dr-3", DOCTOR, drafted.json()["id"])]
    again = await http.put(url, headers=colleague, json={"findings": "Mine.",
                                                         "impression": "Mine."})
    assert again.status_code == 403 and "not-the-author" in again.text
    assert (await http.post(f"{url}/sign", headers=doctor)).status_code == 200
    assert len(await outbox(app, "xray.report_draft_replaced")) == 1
