"""``prescription.issued`` tells the patient a new prescription is ready, once, naming no drug."""

from __future__ import annotations

from healthflow.contracts.prescription import PrescriptionIssued
from healthflow.devkit.testing import eventually

from ..conftest import NOW, Notif, event, user_registered


async def test_an_issued_prescription_is_announced_once_without_the_medication(
        notif: Notif) -> None:
    await notif.deliver(user_registered("pat-rx", email="rx@patients.test"))
    notif.clock.advance(seconds=1)
    issued = event("prescription.issued", PrescriptionIssued(
        prescription_id="rx-1", patient_id="pat-rx", encounter_id="enc-1",
        prescriber_id="doc-1", issued_at=NOW).model_dump(mode="json"),
        subject="prescription/rx-1")
    await notif.deliver(issued, issued)  # a redelivery sends nothing more

    await eventually(lambda: len(notif.smtp.to("rx@patients.test")) == 2,
                     message="the welcome and the prescription email were not received")
    mail = notif.smtp.to("rx@patients.test")[-1]
    assert mail.message["Subject"] == "Your new prescription is ready"
    deliveries = await notif.deliveries(source_id=issued.id)
    assert {d["channel"] for d in deliveries} >= {"email", "sms"}
    assert all(d["template"] == "prescription_issued" for d in deliveries)
    assert len([d for d in deliveries if d["channel"] == "email"]) == 1
    assert "rx-1" not in str(mail.message) and "Amoxicillin" not in str(mail.message)
