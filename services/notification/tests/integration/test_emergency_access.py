"""``record.emergency_access_granted`` (break-the-glass) tells the patient, once, on their
feed and by e-mail, naming no clinician and no reason."""

from __future__ import annotations

from datetime import timedelta

from healthflow.common.events.envelope import CloudEvent
from healthflow.contracts.records import EmergencyAccessGranted
from healthflow.devkit.testing import eventually

from ..conftest import NOW, Notif, event, user_registered


def granted(grant_id: str, patient_id: str) -> CloudEvent:
    return event("record.emergency_access_granted", EmergencyAccessGranted(
        grant_id=grant_id, patient_id=patient_id, accessor_id="doc-er",
        accessor_roles=["doctor"], granted_at=NOW,
        expires_at=NOW + timedelta(hours=1)).model_dump(mode="json"),
        subject=f"patient/{patient_id}")


async def test_an_emergency_access_becomes_a_feed_item_of_the_patient(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-btg", email="btg@patients.test"))
    notif.clock.advance(seconds=1)
    grant = granted("grant-1", "pat-btg")
    await notif.deliver(grant, grant)  # a redelivery tells nothing more

    feed = (await notif.client.get("/api/v1/notifications/feed",
                                   headers=notif.headers("pat-btg"))).json()
    assert [i["template"] for i in feed["items"]] == ["emergency_access", "welcome"]
    assert "emergency" in feed["items"][0]["title"].lower()
    await eventually(lambda: len(notif.smtp.to("btg@patients.test")) == 2,
                     message="the welcome and the emergency access email were not received")
    mail = notif.smtp.to("btg@patients.test")[-1]
    assert mail.message["Subject"] == "Your health record was opened in an emergency"
    assert "doc-er" not in str(mail.message) and "grant-1" not in str(mail.message)
    deliveries = await notif.deliveries(source_id=grant.id)
    assert "email" in {d["channel"] for d in deliveries}
    assert len([d for d in deliveries if d["channel"] == "email"]) == 1
