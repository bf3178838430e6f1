"""``emergency.destination_chosen`` tells the receiving hospital's staff in advance: an
urgent SMS (and push, feed item) naming the priority and department, never the patient."""

from __future__ import annotations

import json

from healthflow.contracts.emergency import EmergencyDestinationChosen
from healthflow.devkit.sandbox import PushSink, browser_subscription
from healthflow.devkit.testing import eventually

from ..conftest import NOW, Notif, event, user_registered
from .test_api import staff_event


async def test_the_receiving_staff_are_told_an_ambulance_is_inbound(notif: Notif) -> None:
    await notif.deliver(user_registered("doc-er", phone="+4915100000901", name="Dr Er"),
                        user_registered("nurse-er", phone="+4915100000902"),
                        event("hospital.verified", {
                            "hospital_id": "hosp-er", "version": 2, "name": "Meilahti",
                            "city": "Helsinki", "country": "FI",
                            "time_zone": "Europe/Helsinki", "status": "verified",
                            "services": [], "verified_at": NOW.isoformat()},
                            subject="hospital/hosp-er"),
                        staff_event("staff.assigned", "doc-er", "hosp-er"),
                        staff_event("staff.assigned", "nurse-er", "hosp-er"))
    notif.clock.advance(seconds=1)
    chosen = event("emergency.destination_chosen", EmergencyDestinationChosen(
        emergency_id="em-1", priority="P1", hospital_id="hosp-er", department_id="dep-er",
        department="emergency", distance_m=1520.0, unit_id="unit-1",
        receiving_staff=["doc-er", "nurse-er"], chosen_at=NOW).model_dump(mode="json"),
        subject="emergency/em-1")
    await notif.deliver(chosen, chosen)  # a redelivery sends nothing more

    for phone in ("+4915100000901", "+4915100000902"):
        await eventually(lambda phone=phone: len(notif.twilio.to(phone)) == 1,  # type: ignore[misc]
                         message=f"no inbound SMS to {phone}")
    sms = notif.twilio.to("+4915100000901")[0]
    assert sms.body == ("HealthFlow: an ambulance is bringing a P1 patient to emergency at "
                        "Meilahti, Helsinki. Details in the app: " + notif.runtime.settings
                        .app_base_url)  # type: ignore[attr-defined]
    deliveries = await notif.deliveries(source_id=chosen.id)
    assert {d["user_id"] for d in deliveries} == {"doc-er", "nurse-er"}
    assert all(d["template"] == "emergency_inbound" and d["urgent"] for d in deliveries)
    assert [d["channel"] for d in deliveries] == ["sms", "sms"]  # no push subscriptions


async def test_the_inbound_push_is_sent_with_high_urgency(notif: Notif,
                                                          push_sink: PushSink) -> None:
    browser = browser_subscription(push_sink.endpoint("er-phone"))
    created = await notif.client.post("/api/v1/notifications/push/subscriptions",
                                      json=browser.to_json(),
                                      headers=notif.headers("doc-er2", ("doctor",)))
    assert created.status_code == 201, created.text
    await notif.deliver(user_registered("doc-er2", phone=None),
                        staff_event("staff.assigned", "doc-er2", "hosp-x"))
    notif.clock.advance(seconds=1)
    await notif.deliver(event("emergency.destination_chosen", EmergencyDestinationChosen(
        emergency_id="em-2", priority="P2", hospital_id="hosp-x", department_id="dep-x",
        department="emergency", distance_m=800.0, unit_id="unit-2",
        receiving_staff=["doc-er2"], chosen_at=NOW).model_dump(mode="json"),
        subject="emergency/em-2"))
    await eventually(lambda: len(push_sink.received) == 1, message="no inbound push")
    push = push_sink.received[0]
    headers = {name.lower(): value for name, value in push.headers.items()}
    assert headers["urgency"] == "high"  # RFC 8030 §5.3: an urgent kind
    assert json.loads(browser.decrypt(push.body))["tag"] == "emergency_inbound"



async def test_staff_removed_from_the_hospital_are_not_told(notif: Notif) -> None:
    """``staff.removed`` ends the membership here: the emergency service's
    ``receiving_staff`` may still name them (its list predates the removal), nobody
    without a current membership at that hospital gets the notice."""
    gone, other = "mem-gone", "mem-other"
    await notif.deliver(user_registered("doc-stay", phone="+4915100000911"),
                        user_registered("doc-gone", phone="+4915100000912"),
                        user_registered("doc-else", phone="+4915100000913"),
                        staff_event("staff.assigned", "doc-stay", "hosp-r"),
                        staff_event("staff.assigned", "doc-gone", "hosp-r", gone),
                        staff_event("staff.assigned", "doc-else", "hosp-other", other),
                        staff_event("staff.removed", "doc-gone", "hosp-r", gone,
                                    removed_at=NOW.isoformat()))
    notif.clock.advance(seconds=1)
    chosen = event("emergency.destination_chosen", EmergencyDestinationChosen(
        emergency_id="em-3", priority="P1", hospital_id="hosp-r", department_id="dep-r",
        department="emergency", distance_m=900.0, unit_id="unit-3",
        receiving_staff=["doc-stay", "doc-gone", "doc-else"], chosen_at=NOW
    ).model_dump(mode="json"), subject="emergency/em-3")
    await notif.deliver(chosen)
    await eventually(lambda: len(notif.twilio.to("+4915100000911")) == 1,
                     message="the current staff member was not told")
    await notif.settle()
    assert notif.twilio.to("+4915100000912") == []
    assert notif.twilio.to("+4915100000913") == []
    deliveries = await notif.deliveries(source_id=chosen.id)
    assert {d["user_id"] for d in deliveries} == {"doc-stay"}
