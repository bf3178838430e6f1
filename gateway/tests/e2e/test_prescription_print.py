"""The printed prescription names its hospital and verifies against the published key set
(issue 11), through the gateway on the session's platform.

The appointment's hospital reaches the records service's encounter (its location),
the prescription service through ``encounter.started``, and the hospital's name and
city through ``hospital.*`` events; the PDF shows them. Anyone without an account
reads the JWK Set at ``/api/v1/prescriptions/keys`` and checks the PDF's signature
with the key its ``kid`` names.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import httpx
import pypdf

from healthflow.devkit.testing import RunningPlatform, eventually
from healthflow.prescription import keys
from healthflow.prescription.domain import signed_message

from .conftest import User, ok
from .test_prescriptions import encounter_of
from .test_records import checked_in_appointment

IBUPROFEN = {"medication": {"text": "Ibuprofen 400 mg"}, "dose": {"value": 400, "unit": "mg"},
             "route": "oral", "frequency": {"count": 2}, "duration": {"value": 5},
             "quantity": {"value": 10, "unit": "{tablet}"}, "repeats": 0}


async def prescribed(api: Any, doctor: User, encounter_id: str) -> dict[str, Any]:
    """A prescription in the encounter, once the prescription service knows it."""
    made: dict[str, Any] = {}

    async def issued() -> bool:
        response = await api.post("/api/v1/prescriptions", headers=doctor.headers,
                                  json={**IBUPROFEN, "encounter_id": encounter_id})
        made.update(response.json() if response.status_code == 201 else {})
        return response.status_code == 201

    await eventually(issued, within=20, message="the encounter never reached prescriptions")
    return made


async def test_the_pdf_names_the_hospital_and_verifies_with_the_published_keys(
        platform: RunningPlatform, admin: User) -> None:
    async with platform.client() as api:
        patient, doctor, _ = await checked_in_appointment(api, admin)
        encounter = await encounter_of(api, patient)
        hospital = ok(await api.get(f"/api/v1/hospitals/{encounter['hospital_id']}",
                                    headers=admin.headers))
        rx = await prescribed(api, doctor, encounter["id"])
        pdf: bytes = b""

        async def names_the_hospital() -> bool:
            nonlocal pdf
            response = await api.get(f"/api/v1/prescriptions/{rx['id']}/pdf",
                                     headers=patient.headers)
            assert response.status_code == 200, response.text
            pdf = response.content
            text = pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
            return f"{hospital['name']}, Berlin, DE" in text

        await eventually(names_the_hospital, within=20, message="no hospital on the PDF")
        digest = hashlib.sha256(pdf).hexdigest()
        async with httpx.AsyncClient(base_url=str(api.base_url)) as anyone:  # no account
            key_set = ok(await anyone.get("/api/v1/prescriptions/keys"))["keys"]
            checked = ok(await anyone.get(f"/api/v1/prescriptions/verify/{rx['id']}",
                                          params={"sha256": digest}))
        assert checked["matches"] is True
        [signed] = [d for d in checked["documents"] if d["sha256"] == digest]
        by_kid = {k["kid"]: k for k in key_set}
        assert keys.verify(by_kid[signed["kid"]], signed_message(rx["id"], digest),
                           signed["signature"])
