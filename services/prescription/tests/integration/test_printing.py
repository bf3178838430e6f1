"""The printable prescription: a signed PDF for its readers, checked at a public address."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime

import pypdf

from healthflow.common.events.envelope import CloudEvent
from healthflow.contracts.auth import UserRegistered
from healthflow.devkit.testing import eventually
from healthflow.prescription import keys
from healthflow.prescription.domain import signed_message

from .conftest import Pharmacy


async def registered(pharmacy: Pharmacy, user_id: str, name: str, role: str) -> None:
    data = UserRegistered(user_id=user_id, email=f"{user_id}@example.org", full_name=name,
                          phone=None, roles=[role], self_registered=role == "patient")
    await pharmacy.send(CloudEvent(source="/healthflow/auth", type=UserRegistered.event_type,
                                   subject=user_id, data=data.model_dump(mode="json"),
                                   time=datetime.now(UTC)))

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
    assert f"http://test{verify}" in text
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
