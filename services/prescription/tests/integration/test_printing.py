"""The printable prescription: a signed PDF for its readers, checked at a public address."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from typing import Any

import pypdf

from healthflow.common.events.envelope import CloudEvent
from healthflow.common.service import shared_inprocess_transport
from healthflow.contracts.auth import UserRegistered
from healthflow.contracts.hospital import (
    HospitalRegistered,
    HospitalRejected,
    HospitalSnapshot,
    HospitalVerified,
)
from healthflow.devkit.testing import TokenFactory, eventually, running_app
from healthflow.prescription import keys
from healthflow.prescription.app import create_app
from healthflow.prescription.domain import signed_message

from .conftest import PERSON_KEYS, Pharmacy, settings_for


async def registered(pharmacy: Pharmacy, user_id: str, name: str, role: str) -> None:
    data = PERSON_KEYS.registered(user_id, email=f"{user_id}@example.org", full_name=name,
                                  phone=None, roles=[role], self_registered=role == "patient")
    await pharmacy.send(CloudEvent(source="/healthflow/auth", type=UserRegistered.event_type,
                                   subject=user_id, data=data, time=datetime.now(UTC)))

    async def known() -> bool:
        return await pharmacy.runtime.db["people"].count_documents({"_id": user_id}) == 1

    await eventually(known, message="user.registered never applied")


async def test_a_printed_prescription_is_signed_and_checked_publicly(pharmacy: Pharmacy) -> None:
    await registered(pharmacy, "pat-p", "Eve Example", "patient")
    await registered(pharmacy, "doc-p", "Dr. Ada Lovelace", "doctor")
    encounter = await pharmacy.encounter("pat-p", "doc-p")
    rx = (await pharmacy.prescribe("doc-p", encounter)).json()
    url = f"/api/v1/prescriptions/{rx['id']}/pdf"
    verify = f"/api/v1/prescriptions/verify/{rx['id']}"
    assert (await pharmacy.client.get(verify)).status_code == 404  # not printed yet

    printed = await pharmacy.client.get(url, headers=pharmacy.as_("pat-p", "patient"))
    assert printed.status_code == 200, printed.text
    assert printed.headers["content-type"] == "application/pdf"
    text = pypdf.PdfReader(io.BytesIO(printed.content)).pages[0].extract_text()
    assert "Eve Example" in text and "Dr. Ada Lovelace" in text and "Amoxicillin" in text
    assert f"http://127.0.0.1:8000{verify}" in text  # the configured address (default)
    digest = hashlib.sha256(printed.content).hexdigest()
    again = await pharmacy.client.get(url, headers=pharmacy.as_("ph-1", "pharmacist"))
    assert hashlib.sha256(again.content).hexdigest() == digest  # the same document

    checked = await pharmacy.client.get(verify, params={"sha256": digest})  # no token
    assert checked.status_code == 200, checked.text
    body = checked.json()
    assert body["matches"] is True and body["status"] == "active"
    [document] = body["documents"]
    [jwk] = body["keys"]
    assert document["sha256"] == digest and document["kid"] == jwk["kid"]
    assert keys.verify(jwk, signed_message(rx["id"], digest), document["signature"])
    assert "Eve" not in checked.text and "Amoxicillin" not in checked.text
    forged = await pharmacy.client.get(verify, params={"sha256": "0" * 64})
    assert forged.json()["matches"] is False
    assert (await pharmacy.client.get(verify, params={"sha256": "xyz"})).status_code == 422


async def test_only_readers_print_and_only_issued_prescriptions(pharmacy: Pharmacy) -> None:
    encounter = await pharmacy.encounter("pat-q", "doc-q")
    draft = (await pharmacy.prescribe("doc-q", encounter, draft=True)).json()
    doctor = pharmacy.as_("doc-q", "doctor")
    response = await pharmacy.client.get(f"/api/v1/prescriptions/{draft['id']}/pdf",
                                         headers=doctor)
    assert response.status_code == 409 and response.json()["type"].endswith(
        "/prescription-state")
    await pharmacy.client.post(f"/api/v1/prescriptions/{draft['id']}/issue", json={},
                               headers=doctor)
    url = f"/api/v1/prescriptions/{draft['id']}/pdf"
    assert (await pharmacy.client.get(url, headers=pharmacy.as_("doc-x", "doctor"))
            ).status_code == 403
    assert (await pharmacy.client.get(url, headers=pharmacy.as_("pat-x", "patient"))
            ).status_code == 404
    assert (await pharmacy.client.get(url)).status_code == 401
    assert (await pharmacy.client.get(url, headers=doctor)).status_code == 200
    # one key for every print, kept in the database
    assert await pharmacy.runtime.db["signing_keys"].count_documents({}) == 1


async def test_the_printed_address_is_the_configured_one_never_the_callers_host(
        mongodb_url: str, unique_name: str, tokens: TokenFactory) -> None:
    """A reader cannot get a PDF signed whose QR code points elsewhere (``Host``/
    ``X-Forwarded-Host`` are the client's to choose), nor grow the signed list at will."""
    transport = shared_inprocess_transport(mongodb_url)
    seed = keys.new_seed()
    app = create_app(settings_for(mongodb_url, unique_name, transport="inprocess",
                                  public_base_url="https://rx.healthflow.example/",
                                  signing_key=keys.b64url(seed)),
                     transport=transport)
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        pharmacy = Pharmacy(client, app.state.runtime, tokens, app.state.runtime.transport)
        encounter = await pharmacy.encounter("pat-h", "doc-h")
        rx = (await pharmacy.prescribe("doc-h", encounter)).json()
        url = f"/api/v1/prescriptions/{rx['id']}/pdf"
        patient = pharmacy.as_("pat-h", "patient")
        for host in ("evil.example", "evil2.example"):
            printed = await client.get(url, headers={**patient, "host": host,
                                                     "x-forwarded-host": host})
            assert printed.status_code == 200, printed.text
            text = pypdf.PdfReader(io.BytesIO(printed.content)).pages[0].extract_text()
            assert "evil" not in text
            assert f"https://rx.healthflow.example/api/v1/prescriptions/verify/{rx['id']}" in text
        doc = await app.state.runtime.db["prescriptions"].find_one({"_id": rx["id"]})
        assert len(doc["documents"]) == 1
        checked = (await client.get(f"/api/v1/prescriptions/verify/{rx['id']}")).json()
        assert checked["keys"] == [keys.from_seed(seed).jwk()]  # the configured key signs
        assert await app.state.runtime.db["signing_keys"].count_documents({}) == 0


async def test_after_a_key_rotation_older_prints_still_verify_and_both_keys_are_published(
        mongodb_url: str, unique_name: str, tokens: TokenFactory) -> None:
    """The same database, restarted with a new ``PRESCRIPTION_SIGNING_KEY``."""
    old, new = keys.new_seed(), keys.new_seed()
    printed: dict[str, tuple[str, str]] = {}
    for seed in (old, new):
        app = create_app(settings_for(mongodb_url, unique_name, transport="inprocess",
                                      signing_key=keys.b64url(seed)),
                         transport=shared_inprocess_transport(mongodb_url))
        app.state.verifier = tokens.verifier()
        async with running_app(app) as client:
            pharmacy = Pharmacy(client, app.state.runtime, tokens, app.state.runtime.transport)
            encounter = await pharmacy.encounter(f"pat-{len(printed)}", "doc-k")
            rx = (await pharmacy.prescribe("doc-k", encounter)).json()
            pdf = await client.get(f"/api/v1/prescriptions/{rx['id']}/pdf",
                                   headers=pharmacy.as_("doc-k", "doctor"))
            assert pdf.status_code == 200, pdf.text
            printed[keys.from_seed(seed).kid] = (rx["id"], hashlib.sha256(pdf.content).hexdigest())
            published = (await client.get("/api/v1/prescriptions/keys")).json()["keys"]
            for kid, (rx_id, digest) in printed.items():
                checked = (await client.get(f"/api/v1/prescriptions/verify/{rx_id}",
                                            params={"sha256": digest})).json()
                assert checked["matches"] is True, (kid, checked)
                assert [d["kid"] for d in checked["documents"]] == [kid]
                assert [k["kid"] for k in checked["keys"]] == [kid]
    assert [k["kid"] for k in published] == [keys.from_seed(new).kid, keys.from_seed(old).kid]
    assert all(set(k) == {"kty", "crv", "x", "kid", "use", "alg"} for k in published)


def hospital_event(model: type[HospitalSnapshot], version: int, name: str,
                   hospital_id: str = "h-print", **more: Any) -> CloudEvent:
    data = model(hospital_id=hospital_id, version=version, name=name, city="Berlin",
                 country="DE", time_zone="Europe/Berlin", services=["general"], **more)
    return CloudEvent(source="/healthflow/hospital", type=model.event_type,
                      subject=f"hospital/{hospital_id}", data=data.model_dump(mode="json"),
                      time=datetime.now(UTC))


async def test_the_pdf_names_the_hospital_of_the_encounter_newest_version_kept(
        pharmacy: Pharmacy) -> None:
    now = datetime.now(UTC)
    await pharmacy.send(hospital_event(HospitalVerified, 2, "Charité Mitte",
                                       status="verified", verified_at=now))
    await pharmacy.send(hospital_event(HospitalRegistered, 1, "Charite (pending)",
                                       status="pending", registered_by="admin-1"))  # late

    async def applied() -> bool:
        return await pharmacy.runtime.db["inbox"].count_documents({}) >= 2

    await eventually(applied, message="hospital events never applied")
    at_hospital = await pharmacy.encounter("pat-w", "doc-w", hospital_id="h-print")
    online = await pharmacy.encounter("pat-w", "doc-w")
    texts = []
    for encounter in (at_hospital, online):
        rx = (await pharmacy.prescribe("doc-w", encounter, medication={
            "text": f"Drug {len(texts)}"})).json()
        pdf = await pharmacy.client.get(f"/api/v1/prescriptions/{rx['id']}/pdf",
                                        headers=pharmacy.as_("doc-w", "doctor"))
        assert pdf.status_code == 200, pdf.text
        texts.append(pypdf.PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text())
    assert "Charité Mitte, Berlin, DE" in texts[0] and "pending" not in texts[0]
    assert "Charit" not in texts[1]


async def test_a_pending_or_rejected_hospital_is_not_printed(pharmacy: Pharmacy) -> None:
    now = datetime.now(UTC)
    await pharmacy.send(hospital_event(HospitalRegistered, 1, "Pending Klinik",
                                       hospital_id="h-pending", status="pending",
                                       registered_by="admin-1"))
    await pharmacy.send(hospital_event(HospitalVerified, 1, "Revoked Klinik",
                                       hospital_id="h-rejected", status="verified",
                                       verified_at=now))
    await pharmacy.send(hospital_event(HospitalRejected, 2, "Revoked Klinik",
                                       hospital_id="h-rejected", status="rejected",
                                       reason="licence withdrawn", rejected_at=now))

    async def applied() -> bool:
        return await pharmacy.runtime.db["inbox"].count_documents({}) >= 3

    await eventually(applied, message="hospital events never applied")
    for hospital_id in ("h-pending", "h-rejected"):
        encounter = await pharmacy.encounter("pat-v", "doc-v", hospital_id=hospital_id)
        rx = (await pharmacy.prescribe("doc-v", encounter, medication={
            "text": f"Drug {hospital_id}"})).json()
        pdf = await pharmacy.client.get(f"/api/v1/prescriptions/{rx['id']}/pdf",
                                        headers=pharmacy.as_("doc-v", "doctor"))
        assert pdf.status_code == 200, pdf.text
        text = pypdf.PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
        assert "Klinik" not in text, (hospital_id, text)


async def test_an_erased_persons_name_is_deleted_and_no_longer_printed(
        pharmacy: Pharmacy) -> None:
    """Issue 17: the name came sealed; ``user.erased`` deletes the clear copy, and a late
    ``user.registered`` whose key is gone keeps nothing."""
    await registered(pharmacy, "pat-e", "Ottilie Farnsworth", "patient")
    await registered(pharmacy, "doc-e", "Dr. Ada Lovelace", "doctor")
    encounter = await pharmacy.encounter("pat-e", "doc-e")
    rx = (await pharmacy.prescribe("doc-e", encounter)).json()
    PERSON_KEYS.erase("pat-e")
    await pharmacy.send(CloudEvent(source="/healthflow/auth", type="user.erased",
                                   subject="pat-e", time=datetime.now(UTC),
                                   data={"user_id": "pat-e", "erased_by": "admin-1"}))

    async def forgotten() -> bool:
        return await pharmacy.runtime.db["people"].count_documents({"_id": "pat-e"}) == 0

    await eventually(forgotten, message="user.erased never applied")
    printed = await pharmacy.client.get(f"/api/v1/prescriptions/{rx['id']}/pdf",
                                        headers=pharmacy.as_("pat-e", "patient"))
    text = pypdf.PdfReader(io.BytesIO(printed.content)).pages[0].extract_text()
    assert "Ottilie Farnsworth" not in text and "pat-e" in text

    late = PERSON_KEYS.registered("pat-e", email="e@example.org", full_name="Ottilie Farnsworth",
                                  phone=None, roles=["patient"])
    PERSON_KEYS.erase("pat-e")  # registered() made a fresh key: gone before delivery
    event = CloudEvent(source="/healthflow/auth", type=UserRegistered.event_type,
                       subject="pat-e", data=late, time=datetime.now(UTC))
    await pharmacy.send(event)

    async def handled() -> bool:
        return await pharmacy.runtime.db["inbox"].count_documents({"_id": event.id}) == 1

    await eventually(handled, message="the late user.registered was not handled")
    assert await pharmacy.runtime.db["people"].count_documents({"_id": "pat-e"}) == 0
