"""Guests: a single-use link from the doctor, redeemed once for a guest session that
reaches only that room; the guest waits, is admitted, sends and receives media."""

from __future__ import annotations

import asyncio

from healthflow.devkit.testing import TokenFactory, eventually
from healthflow.devkit.webrtc import API, Peer

from .conftest import Client, appointment, deliver, frames_flow, published


async def test_an_invited_interpreter_redeems_the_link_once_and_joins_after_admission(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    event, other = appointment(), appointment(patient="patient-2")
    await deliver(app, event)
    await deliver(app, other)
    room = f"{API}/{event.appointment_id}"
    doctor = Peer(http, tokens.headers("doctor-user-1", ("doctor",)), event.appointment_id)
    patient = tokens.headers("patient-1", ("patient",))
    assert (await http.post(f"{room}/guests", headers=patient,
                            json={"kind": "interpreter"})).status_code == 403
    bad = await http.post(f"{room}/guests", headers=doctor.headers, json={"kind": "friend"})
    assert bad.status_code == 422
    invited = await http.post(f"{room}/guests", headers=doctor.headers,
                              json={"kind": "interpreter"})
    assert invited.status_code == 201, invited.text
    link = invited.json()
    assert link["link"].endswith(link["token"])
    stored = await app.state.runtime.db["invitations"].find_one({"_id": link["invitation_id"]})
    assert link["token"] not in str(stored)  # only its hash is kept

    redeemed = await http.post(f"{API}/guest/redeem", json={"token": link["token"]})
    assert redeemed.status_code == 200, redeemed.text
    session = redeemed.json()
    again = await http.post(f"{API}/guest/redeem", json={"token": link["token"]})
    assert again.status_code == 410 and again.json()["type"].endswith("/guest-link-spent")
    assert (await http.post(f"{API}/guest/redeem",
                            json={"token": "x" * 43})).status_code == 404

    headers = {"X-Guest-Token": session["guest_token"]}
    assert (await http.post(f"{API}/guest/{event.appointment_id}/join")).status_code == 401
    assert (await http.post(f"{API}/guest/{event.appointment_id}/join",
                            headers={"X-Guest-Token": "forged"})).status_code == 401
    # the guest session reaches its own room only, never the members' routes
    assert (await http.post(f"{API}/guest/{other.appointment_id}/join",
                            headers=headers)).status_code == 404
    assert (await http.post(f"{room}/join", headers=headers)).status_code == 401

    guest = Peer(http, headers, event.appointment_id, guest=True)
    try:
        await doctor.join()
        joined = await guest.join()
        assert joined["participant"]["state"] == "waiting"
        assert joined["participant"]["user_id"] == session["participant_user_id"]
        assert (await guest.publish()).status_code == 409
        # a guest does not admit anyone, nor see the recordings
        admit = f"participants/{joined['participant']['id']}/admit"
        assert (await http.post(f"{API}/guest/{event.appointment_id}/{admit}",
                                headers=headers)).status_code in (404, 405)
        assert (await http.post(f"{room}/{admit}", headers=doctor.headers)).status_code == 200
        assert (await doctor.publish()).status_code == 200
        assert (await guest.publish()).status_code == 200

        async def live() -> bool:
            return bool(await guest.feeds()) and bool(await doctor.feeds())

        await eventually(live, within=20, interval=0.2, message="no feeds")
        assert guest.feed and doctor.feed
        await guest.watch(doctor.feed)
        await doctor.watch(guest.feed)
        await frames_flow(guest, doctor.feed)
        await frames_flow(doctor, guest.feed)
        joins = await published(app, "teleconsult.participant_joined")
        assert ("guest", "waiting") in [(j["role"], j["state"]) for j in joins]
        [invite_event] = await published(app, "teleconsult.guest_invited")
        assert invite_event["kind"] == "interpreter"
        assert "token" not in str(invite_event)
        # removed for good: the session no longer gets in
        removed = await http.post(f"{room}/participants/{joined['participant']['id']}/remove",
                                  headers=doctor.headers)
        assert removed.status_code == 200
        assert (await guest.call("POST", "/join")).status_code == 403
        # nor sees who is in the room any more
        looked = await guest.call("GET", "")
        assert looked.status_code == 403 and looked.json()["type"].endswith(
            "/participant-removed")
    finally:
        await asyncio.gather(doctor.close(), guest.close())


async def test_a_room_takes_a_bounded_number_of_invitations(
        client: Client, tokens: TokenFactory) -> None:
    """Each invitation is a stored link and a guest the room must fit (Janus's room takes
    six publishers): past the limit the doctor is told so, nothing more is stored."""
    http, app = client
    event = appointment()
    await deliver(app, event)
    invite = f"{API}/{event.appointment_id}/guests"
    doctor = tokens.headers("doctor-user-1", ("doctor",))
    for _ in range(8):
        made = await http.post(invite, headers=doctor, json={"kind": "family"})
        assert made.status_code == 201, made.text
    refused = await http.post(invite, headers=doctor, json={"kind": "family"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"].endswith("/guest-limit")
    stored = await app.state.runtime.db["invitations"].count_documents(
        {"room_id": event.appointment_id})
    assert stored == 8
