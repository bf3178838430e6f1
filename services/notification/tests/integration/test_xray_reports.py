"""``xray.reported`` tells the patient their X-ray report is ready, once, in their language,
naming no body part, finding or doctor."""

from __future__ import annotations

from healthflow.common.events.envelope import CloudEvent
from healthflow.contracts.xray import XrayReported
from healthflow.devkit.testing import eventually

from ..conftest import NOW, Notif, event, user_registered


def reported(report_id: str, patient_id: str) -> CloudEvent:
    return event("xray.reported", XrayReported(
        report_id=report_id, study_id="study-1", order_id="order-1", encounter_id="enc-1",
        patient_id=patient_id, author_id="doc-1", status="final",
        issued_at=NOW).model_dump(mode="json"), subject="imaging-study/study-1")


async def test_a_signed_xray_report_is_announced_once_without_clinical_content(
        notif: Notif) -> None:
    await notif.deliver(user_registered("pat-xr", email="xr@patients.test"))
    notif.clock.advance(seconds=1)
    signed = reported("rep-1", "pat-xr")
    await notif.deliver(signed, signed)  # a redelivery sends nothing more

    await eventually(lambda: len(notif.smtp.to("xr@patients.test")) == 2,
                     message="the welcome and the report email were not received")
    mail = notif.smtp.to("xr@patients.test")[-1]
    assert mail.message["Subject"] == "Your X-ray report is ready"
    deliveries = await notif.deliveries(source_id=signed.id)
    assert {d["channel"] for d in deliveries} >= {"email", "sms"}
    assert all(d["template"] == "xray_report_ready" for d in deliveries)
    assert len([d for d in deliveries if d["channel"] == "email"]) == 1
    assert "study-1" not in str(mail.message) and "doc-1" not in str(mail.message)
