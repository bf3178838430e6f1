"""``paramedic.task_offered`` to a unit whose app had no task stream open becomes an
SMS to its paramedic (the push fallback); a connected unit gets nothing here."""

from __future__ import annotations

from datetime import timedelta

from healthflow.contracts.paramedic import TaskOffered, TaskUnacknowledged, XrayTaskOffered
from healthflow.devkit.testing import eventually

from ..conftest import NOW, Notif, event, user_registered


def offered(task_id: str, paramedic: str, connected: bool) -> TaskOffered:
    return TaskOffered(task_id=task_id, emergency_id="em-1", unit_id=paramedic,
                       paramedic_id=paramedic, distance_m=900.0, travel_s=120.0,
                       by_road=True, attempt=1, offered_at=NOW,
                       expires_at=NOW + timedelta(seconds=30), call_sign="HKI 121",
                       stream_connected=connected)


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
