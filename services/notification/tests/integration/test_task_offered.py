"""``paramedic.task_offered`` / ``xray_task_offered`` are pushed at once (Web Push, to the
loopback push service of the devkit sandbox) to every browser the paramedic subscribed;
an offer to a unit whose app had no task stream open, or one the app never acknowledged
(``task_unacknowledged``), is also texted; a paramedic without a subscription gets the
SMS path alone."""

from __future__ import annotations

import json
from datetime import timedelta

from healthflow.contracts.paramedic import TaskOffered, TaskUnacknowledged, XrayTaskOffered
from healthflow.devkit.sandbox import (
    BrowserSubscription,
    PushRecord,
    PushSink,
    browser_subscription,
)
from healthflow.devkit.testing import eventually
from healthflow.notification import domain

from ..conftest import NOW, Notif, event, user_registered

BASE = "/api/v1/notifications"


def offered(task_id: str, paramedic: str, connected: bool) -> TaskOffered:
    return TaskOffered(task_id=task_id, emergency_id="em-1", unit_id=paramedic,
                       paramedic_id=paramedic, distance_m=900.0, travel_s=120.0,
                       by_road=True, attempt=1, offered_at=NOW,
                       expires_at=NOW + timedelta(seconds=30), call_sign="HKI 121",
                       stream_connected=connected)


async def subscribe(notif: Notif, sink: PushSink, user_id: str,
                    browser: str) -> BrowserSubscription:
    """The paramedic's app registers a browser for Web Push (as the app does)."""
    subscription = browser_subscription(sink.endpoint(browser))
    created = await notif.client.post(
        f"{BASE}/push/subscriptions", json=subscription.to_json(),
        headers=notif.headers(user_id, ("paramedic",)))
    assert created.status_code == 201, created.text
    return subscription


def headers_of(push: PushRecord) -> dict[str, str]:
    return {name.lower(): value for name, value in push.headers.items()}


async def test_an_offer_to_a_unit_without_its_stream_is_texted(notif: Notif) -> None:
    await notif.deliver(user_registered("para-off", phone="+4915100000911", name="Pia"),
                        user_registered("para-on", phone="+4915100000912"))
    notif.clock.advance(seconds=1)
    silent = event("paramedic.task_offered",
                   offered("t-1", "para-off", False).model_dump(mode="json"),
                   subject="emergency/em-1")
    await notif.deliver(silent, silent,  # a redelivery sends nothing more
                        event("paramedic.task_offered",
                              offered("t-2", "para-on", True).model_dump(mode="json"),
                              subject="emergency/em-1"))
    await eventually(lambda: len(notif.twilio.to("+4915100000911")) == 1,
                     message="the paramedic without a stream was not texted")
    sms = notif.twilio.to("+4915100000911")[0]
    assert sms.body.startswith("HealthFlow: an emergency task is offered to HKI 121."), sms.body
    assert "em-1" not in sms.body
    # no browser subscribed: no push delivery, nothing failed, the SMS as before
    [delivery] = await notif.deliveries(source_id=silent.id)
    assert (delivery["channel"], delivery["template"], delivery["urgent"]) == (
        "sms", "task_offered", True)
    assert notif.twilio.to("+4915100000912") == []


async def test_an_x_ray_task_offered_to_a_unit_without_its_stream_is_texted(
        notif: Notif) -> None:
    await notif.deliver(user_registered("rad-off", phone="+4915100000913"))
    notif.clock.advance(seconds=1)
    silent = event("paramedic.xray_task_offered", XrayTaskOffered(
        task_id="t-3", order_id="ord-1", unit_id="rad-off", paramedic_id="rad-off",
        attempt=1, offered_at=NOW, expires_at=NOW + timedelta(seconds=30),
        call_sign="RAD 7", stream_connected=False).model_dump(mode="json"),
        subject="xray-order/ord-1")
    await notif.deliver(silent, silent)  # a redelivery sends nothing more
    await eventually(lambda: len(notif.twilio.to("+4915100000913")) == 1,
                     message="the radiographer without a stream was not texted")
    sms = notif.twilio.to("+4915100000913")[0]
    assert sms.body.startswith("HealthFlow: an X-ray task is offered to RAD 7."), sms.body
    assert "ord-1" not in sms.body
    [delivery] = await notif.deliveries(source_id=silent.id)
    assert (delivery["channel"], delivery["template"]) == ("sms", "task_offered")


async def test_an_offer_the_open_stream_carried_but_the_app_never_acknowledged_is_texted(
        notif: Notif) -> None:
    await notif.deliver(user_registered("para-mute", phone="+4915100000914"))
    notif.clock.advance(seconds=1)
    unacked = event("paramedic.task_unacknowledged", TaskUnacknowledged(
        task_id="t-4", emergency_id="em-2", unit_id="para-mute", paramedic_id="para-mute",
        call_sign="HKI 122", offered_at=NOW, expires_at=NOW + timedelta(seconds=30)
    ).model_dump(mode="json"), subject="emergency/em-2")
    await notif.deliver(unacked, unacked)  # a redelivery sends nothing more
    await eventually(lambda: len(notif.twilio.to("+4915100000914")) == 1,
                     message="the paramedic whose app did not acknowledge was not texted")
    sms = notif.twilio.to("+4915100000914")[0]
    assert sms.body.startswith("HealthFlow: an emergency task is offered to HKI 122."), sms.body
    [delivery] = await notif.deliveries(source_id=unacked.id)
    assert (delivery["channel"], delivery["template"], delivery["trigger"]) == (
        "sms", "task_offered", "paramedic.task_unacknowledged")


async def test_an_offer_is_pushed_at_once_urgent_short_lived_and_without_patient_data(
        notif: Notif, push_sink: PushSink) -> None:
    await notif.deliver(user_registered("para-push", phone="+4915100000921"))
    phone = await subscribe(notif, push_sink, "para-push", "para-phone")
    await subscribe(notif, push_sink, "para-push", "para-tablet")
    notif.clock.advance(seconds=1)
    streamed = event("paramedic.task_offered",
                     offered("t-5", "para-push", True).model_dump(mode="json"),
                     subject="emergency/em-1")
    await notif.deliver(streamed, streamed)  # a redelivery sends nothing more
    await eventually(lambda: len(push_sink.received) == 2,
                     message="the offer was not pushed to both browsers")
    await notif.settle()
    assert sorted(p.subscription for p in push_sink.received) == ["para-phone", "para-tablet"]
    push = next(p for p in push_sink.received if p.subscription == "para-phone")
    headers = headers_of(push)
    assert headers["urgency"] == "high"  # RFC 8030 §5.3
    assert headers["ttl"] == "29"  # the 30 s offer, pushed a second after it was made
    assert headers["topic"] == domain.push_topic("task:t-5")
    payload = json.loads(phone.decrypt(push.body))
    assert {k: payload[k] for k in ("task_id", "kind", "call_sign", "unit_id", "path")} == {
        "task_id": "t-5", "kind": "emergency", "call_sign": "HKI 121",
        "unit_id": "para-push", "path": "/paramedic/tasks/t-5"}
    assert payload["url"].endswith("/paramedic/tasks/t-5")
    assert payload["title"] == "Emergency task offered to HKI 121"
    assert "em-1" not in json.dumps(payload)  # ids of the task only, no emergency
    deliveries = await notif.deliveries(source_id=streamed.id)
    assert sorted((d["channel"], d["status"], d["urgent"]) for d in deliveries) == [
        ("push", "sent", True), ("push", "sent", True)]  # the open stream: no SMS
    assert notif.twilio.to("+4915100000921") == []

    notif.clock.advance(seconds=1)
    again = event("paramedic.task_offered", offered("t-5", "para-push", True).model_copy(
        update={"attempt": 2}).model_dump(mode="json"), subject="emergency/em-1")
    await notif.deliver(again)
    await eventually(lambda: len(push_sink.received) == 4, message="the re-offer not pushed")
    assert {headers_of(p)["topic"] for p in push_sink.received} == {
        domain.push_topic("task:t-5")}  # the push service keeps the newest only


async def test_an_offer_without_a_stream_is_pushed_and_texted(
        notif: Notif, push_sink: PushSink) -> None:
    await notif.deliver(user_registered("rad-push", phone="+4915100000922"))
    browser = await subscribe(notif, push_sink, "rad-push", "rad-phone")
    notif.clock.advance(seconds=1)
    silent = event("paramedic.xray_task_offered", XrayTaskOffered(
        task_id="t-6", order_id="ord-2", unit_id="rad-push", paramedic_id="rad-push",
        attempt=1, offered_at=NOW, expires_at=NOW + timedelta(seconds=30),
        call_sign="RAD 8", stream_connected=False).model_dump(mode="json"),
        subject="xray-order/ord-2")
    await notif.deliver(silent, silent)  # a redelivery sends nothing more
    await eventually(lambda: len(push_sink.received) == 1, message="the offer not pushed")
    await eventually(lambda: len(notif.twilio.to("+4915100000922")) == 1,
                     message="the offer to a unit without its stream was not texted")
    await notif.settle()
    assert len(push_sink.received) == 1 and len(notif.twilio.to("+4915100000922")) == 1
    payload = json.loads(browser.decrypt(push_sink.received[0].body))
    assert (payload["kind"], payload["task_id"], payload["call_sign"]) == (
        "xray", "t-6", "RAD 8")
    assert "ord-2" not in json.dumps(payload)
    deliveries = await notif.deliveries(source_id=silent.id)
    assert sorted((d["channel"], d["status"]) for d in deliveries) == [
        ("push", "sent"), ("sms", "sent")]
    assert all(d["template"] == "task_offered" for d in deliveries)


async def test_an_unacknowledged_offer_is_texted_not_pushed_again(
        notif: Notif, push_sink: PushSink) -> None:
    await notif.deliver(user_registered("para-late", phone="+4915100000923"))
    await subscribe(notif, push_sink, "para-late", "late-phone")
    notif.clock.advance(seconds=1)
    unacked = event("paramedic.task_unacknowledged", TaskUnacknowledged(
        task_id="t-7", emergency_id="em-3", unit_id="para-late", paramedic_id="para-late",
        call_sign="HKI 123", offered_at=NOW, expires_at=NOW + timedelta(seconds=30)
    ).model_dump(mode="json"), subject="emergency/em-3")
    await notif.deliver(unacked)
    await eventually(lambda: len(notif.twilio.to("+4915100000923")) == 1,
                     message="the unacknowledged offer was not texted")
    await notif.settle()
    assert push_sink.received == []  # the push went out with the offer
    assert [d["channel"] for d in await notif.deliveries(source_id=unacked.id)] == ["sms"]
