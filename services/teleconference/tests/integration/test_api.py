"""The teleconference service in-process, on the real MongoDB-protocol server and a real
Janus: two aiortc peers (doctor and patient) are admitted, exchange audio and video
through Janus's VideoRoom, reconnect, and are refused where they should be."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from healthflow.devkit.testing import TokenFactory, eventually
from healthflow.devkit.webrtc import API, Peer
from healthflow.teleconference import store

from .conftest import Client, appointment, deliver, frames_flow, published
from .test_recording import in_call


async def test_doctor_and_patient_are_admitted_and_see_and_hear_each_other_through_janus(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    event = appointment()
    await deliver(app, event)
    doctor = Peer(http, tokens.headers("doctor-user-1", ("doctor",)), event.appointment_id)
    patient = Peer(http, tokens.headers("patient-1", ("patient",)), event.appointment_id)
    try:
        joined = await patient.join()
        assert joined["participant"]["state"] == "waiting"
        turn = joined["ice_servers"][1]
        assert turn["urls"] == ["turn:turn.example.org:3478"]
        assert turn["username"].endswith(":patient-1") and turn["credential"]
        assert (await doctor.join())["participant"]["state"] == "admitted"

        # waiting: no media yet, and only the doctor admits
        refused = await patient.publish()
        assert refused.status_code == 409 and refused.json()["type"].endswith("/not-admitted")
        waiting = joined["participant"]["id"]
        admit = f"{API}/{event.appointment_id}/participants/{waiting}/admit"
        assert (await http.post(admit, headers=patient.headers)).status_code == 403
        assert await published(app, "teleconsult.started") == []
        admitted = await http.post(admit, headers=doctor.headers)
        assert admitted.status_code == 200 and admitted.json()["state"] == "admitted"
        assert (await http.post(admit, headers=doctor.headers)).status_code == 409
        started = await published(app, "teleconsult.started")
        assert [s["appointment_id"] for s in started] == [event.appointment_id]

        assert (await doctor.publish()).status_code == 200
        assert (await patient.publish()).status_code == 200
        assert doctor.feed and patient.feed

        async def both_live() -> bool:
            return len(await doctor.feeds()) == 1 and len(await patient.feeds()) == 1

        await eventually(both_live, within=20, interval=0.2, message="feeds never went live")
        [first_feed] = await doctor.feeds()
        assert {k: first_feed[k] for k in ("feed", "participant_id", "role")} == {
            "feed": patient.feed, "participant_id": patient.feed, "role": "patient"}
        await doctor.watch(patient.feed)
        await patient.watch(doctor.feed)
        await frames_flow(doctor, patient.feed)
        await frames_flow(patient, doctor.feed)

        # the doctor sees how each connection does (the patient may not look)
        quality_url = f"{API}/{event.appointment_id}/quality"
        assert (await http.get(quality_url, headers=patient.headers)).status_code == 403

        async def measured() -> bool:
            seen = (await http.get(quality_url, headers=doctor.headers)).json()
            return len(seen) == 2 and all(
                m["packets"] > 0 for q in seen for m in q["media"] if m["kind"] == "video")

        await eventually(measured, within=20, interval=0.5, message="no quality figures")
        seen = (await http.get(quality_url, headers=doctor.headers)).json()
        assert {q["role"] for q in seen} == {"doctor", "patient"}
        kinds = sorted(m["kind"] for q in seen for m in q["media"])
        assert kinds == ["audio", "audio", "video", "video"]
        assert all(0 <= m["loss_percent"] <= 100 for q in seen for m in q["media"])
        assert "192." not in str(seen) and "candidate" not in str(seen)

        # the patient's network drops: they come back without a second admission
        await patient.close()
        again = await patient.join()
        assert again["participant"]["state"] == "admitted"
        assert (await patient.publish()).status_code == 200
        await eventually(both_live, within=20, interval=0.2, message="no feed after rejoin")
        # the feed keeps its id but says it was published anew, so that the others'
        # apps know their subscription to it went dead and subscribe again
        [again_seen] = await doctor.feeds()
        assert again_seen["feed"] == first_feed["feed"]
        assert again_seen["since"] > first_feed["since"]
        before = doctor.received[patient.feed].counts["video"]
        await doctor.watch(patient.feed)
        await frames_flow(doctor, patient.feed, at_least=before + 15)

        room = (await http.get(f"{API}/{event.appointment_id}", headers=doctor.headers)).json()
        assert room["status"] == "in_progress" and room["you"] == "doctor"
        assert {(p["role"], p["state"]) for p in room["participants"]} == {
            ("doctor", "admitted"), ("patient", "admitted")}

        ended = await http.post(f"{API}/{event.appointment_id}/end", headers=doctor.headers)
        assert ended.status_code == 200 and ended.json()["status"] == "ended"
        assert [e["started"] for e in await published(app, "teleconsult.ended")] == [True]
        late = await http.post(f"{API}/{event.appointment_id}/join", headers=patient.headers)
        assert late.status_code == 409 and late.json()["type"].endswith("/room-closed")
        joins = await published(app, "teleconsult.participant_joined")
        assert [(j["role"], j["state"]) for j in joins] == [
            ("patient", "waiting"), ("doctor", "admitted"), ("patient", "admitted"),
            ("patient", "admitted")]
        lefts = await published(app, "teleconsult.participant_left")
        assert sorted(j["reason"] for j in lefts) == ["ended", "ended"]
    finally:
        await asyncio.gather(doctor.close(), patient.close())


async def test_strangers_early_joins_unpaid_and_cancelled_consultations_are_refused(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    event = appointment()
    await deliver(app, event)
    room = f"{API}/{event.appointment_id}"
    # a stranger and another appointment's patient: as if there were no room
    for who in ("stranger", "patient-2"):
        answer = await http.post(f"{room}/join", headers=tokens.headers(who, ("patient",)))
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert (await http.post(f"{room}/join")).status_code == 401
    assert (await http.get(f"{API}/{uuid.uuid4()}",
                           headers=tokens.headers("patient-1", ("patient",)))).status_code == 404

    early = appointment(starts_in=timedelta(days=2))
    await deliver(app, early)
    answer = await http.post(f"{API}/{early.appointment_id}/join",
                             headers=tokens.headers("patient-1", ("patient",)))
    assert answer.status_code == 409 and answer.json()["type"].endswith("/room-not-open")
    opens_at = datetime.fromisoformat(answer.json()["opens_at"])  # stored to the millisecond
    assert abs(opens_at - (early.start - timedelta(minutes=15))) < timedelta(milliseconds=1)

    unpaid = appointment(status="pending_payment")
    await deliver(app, unpaid)
    answer = await http.post(f"{API}/{unpaid.appointment_id}/join",
                             headers=tokens.headers("patient-1", ("patient",)))
    assert answer.status_code == 409 and "confirmed" in answer.json()["detail"]

    cancelled = event.model_copy(update={"status": "cancelled"})
    await deliver(app, cancelled)
    # a late redelivery of the booking does not reopen it
    await deliver(app, event, at=datetime.now(UTC) - timedelta(minutes=1))
    answer = await http.post(f"{room}/join", headers=tokens.headers("patient-1", ("patient",)))
    assert answer.status_code == 409 and answer.json()["type"].endswith("/room-closed")
    assert await app.state.runtime.db["participants"].count_documents({}) == 0


async def test_a_removed_participant_stays_out_and_bad_offers_change_nothing(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    event = appointment()
    await deliver(app, event)
    room = f"{API}/{event.appointment_id}"
    doctor = tokens.headers("doctor-user-1", ("doctor",))
    patient = tokens.headers("patient-1", ("patient",))
    assert (await http.post(f"{room}/join", headers=doctor)).status_code == 200
    me = (await http.post(f"{room}/join", headers=patient)).json()["participant"]
    await http.post(f"{room}/participants/{me['id']}/admit", headers=doctor)
    bad = await http.post(f"{room}/media/publish", headers=patient,
                          json={"type": "offer", "sdp": "v=0 this is not an SDP"})
    assert bad.status_code == 422, bad.text
    assert bad.headers["content-type"].startswith("application/problem+json")
    wrong = await http.post(f"{room}/media/publish", headers=patient,
                            json={"type": "answer", "sdp": "v=0\r\n" * 3})
    assert wrong.status_code == 422
    removed = await http.post(f"{room}/participants/{me['id']}/remove", headers=doctor)
    assert removed.status_code == 200 and removed.json()["state"] == "removed"
    back = await http.post(f"{room}/join", headers=patient)
    assert back.status_code == 403 and back.json()["type"].endswith("/participant-removed")
    left = await published(app, "teleconsult.participant_left")
    assert [(e["reason"], e["removed_by"]) for e in left] == [("removed", "doctor-user-1")]


async def test_subscribing_again_replaces_the_subscription_and_bad_answers_are_422(
        client: Client, tokens: TokenFactory) -> None:
    """Each subscription holds a Janus session kept alive while its owner is in: asking
    again for the same feed (a reconnection) replaces the earlier one rather than piling
    up sessions; an answer Janus cannot take is the client's error, not the server's."""
    http, app = client
    event = appointment()
    await deliver(app, event)
    doctor, patient = await in_call(http, tokens, event.appointment_id)
    janus = app.state.runtime.state["janus"]
    try:
        for _ in range(3):
            await doctor.watch(patient.feed or "")
        me = await app.state.runtime.db["participants"].find_one(
            {"room_id": event.appointment_id, "role": "doctor"})
        [kept] = me["subscriptions"].values()
        assert kept["feed"] == patient.feed
        sessions = set(await store.media_sessions(app.state.runtime.db))
        assert kept["session"] in sessions and len(sessions) == 4  # 2 publishers, 2 watches
        await frames_flow(doctor, patient.feed or "", at_least=doctor.received[
            patient.feed or ""].counts["video"] + 10)

        offered = await doctor.call("POST", "/media/subscriptions",
                                    json={"feed": patient.feed})
        assert offered.status_code == 201
        bad = await doctor.call(
            "POST", f"/media/subscriptions/{offered.json()['subscription_id']}/answer",
            json={"type": "answer", "sdp": "v=0 this is not an SDP"})
        assert bad.status_code == 422, bad.text
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert await janus.keepalive(int(kept["session"])) is False
    finally:
        await asyncio.gather(doctor.close(), patient.close())
