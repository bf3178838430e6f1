"""HTTP routes of the teleconference service: ``/api/v1/teleconsultations/{appointment_id}``.

Room: ``GET`` (state), ``POST /join``, ``POST /leave``, ``POST /end`` (doctor),
``POST /participants/{id}/admit`` and ``/remove`` (doctor). Signalling (HTTP, JSEP
offer/answer exchange, RFC 8829): ``POST /media/publish`` (the caller's offer → the
answer), ``GET /media/feeds``, ``POST /media/subscriptions`` (a feed → an offer),
``POST /media/subscriptions/{id}/answer``. Recording (:mod:`.recording`):
``PUT /recordings/consent``, ``POST /recordings/start`` and ``/stop`` (doctor),
``GET /recordings``, ``GET /recordings/{id}/files/{n}`` (WebM). Guests: ``POST /guests``
(doctor: a single-use link), ``POST /guest/redeem`` (public: the link's token for a
guest session), and the room and signalling routes again under
``/guest/{appointment_id}/…`` with ``X-Guest-Token``. Only the appointment's patient,
doctor and invited guests get anything but 404.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.responses import StreamingResponse

from healthflow.common.auth import Principal, require
from healthflow.common.blobs import BlobStore
from healthflow.common.http import get_runtime
from healthflow.common.mongo import utcnow
from healthflow.common.permissions import Permission as P
from healthflow.common.service import ServiceRuntime
from healthflow.teleconference import guests, recording, service
from healthflow.teleconference.janus import Janus
from healthflow.teleconference.schemas import (
    Answer,
    ConsentIn,
    FeedOut,
    GuestLinkOut,
    GuestSessionOut,
    InviteIn,
    JoinOut,
    LinkOut,
    Offer,
    ParticipantOut,
    PublishOut,
    QualityOut,
    RecordingOut,
    RedeemIn,
    RoomOut,
    SessionDescription,
    SubscribeIn,
    SubscriptionOut,
)

router = APIRouter(prefix="/api/v1/teleconsultations", tags=["teleconsultations"])
guest_router = APIRouter(prefix="/api/v1/teleconsultations/guest", tags=["teleconsultations"])
client_router = APIRouter(prefix="/app/teleconsultation", tags=["teleconsultations"])
STATIC = resources.files("healthflow.teleconference") / "static"
CLIENT_HTML = (STATIC / "client.html").read_bytes()
CLIENT_JS = (STATIC / "client.js").read_bytes()
CLIENT_CSP = ("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
              "connect-src 'self'; media-src 'self' blob: mediastream:; "
              "frame-ancestors 'none'; base-uri 'none'")

Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]
Member = require(P.TELECONSULTATIONS_JOIN)
Host = require(P.TELECONSULTATIONS_JOIN, P.TELECONSULTATIONS_HOST)
RoomId = Annotated[str, Path(max_length=64)]
PartId = Annotated[str, Path(max_length=64)]


def janus_of(request: Request) -> Janus:
    janus: Janus = request.app.state.runtime.state["janus"]
    return janus


def blobs_of(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.runtime.state["blobs"]
    return blobs


async def guest(request: Request,
                x_guest_token: Annotated[str | None, Header(max_length=128)] = None
                ) -> Principal:
    """The guest holding the session secret in ``X-Guest-Token`` (401 otherwise)."""
    return await guests.principal_of(request.app.state.runtime, x_guest_token)


guest.credential = "X-Guest-Token"  # type: ignore[attr-defined]  # in x-healthflow-access
Guest = Depends(guest)
MediaServer = Annotated[Janus, Depends(janus_of)]
Blobs = Annotated[BlobStore, Depends(blobs_of)]
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


async def _room(runtime: ServiceRuntime, principal: Principal, room_id: str) -> RoomOut:
    room, role, participants, window = await service.view(runtime, principal, room_id)
    return RoomOut(appointment_id=room["_id"], status=room["status"], start=room["start"],
                   end=room["end"], opens_at=window.opens_at, closes_at=window.closes_at,
                   started_at=room.get("started_at"), ended_at=room.get("ended_at"),
                   you=role.value, participants=[ParticipantOut.of(p) for p in participants])


def room_routes(target: APIRouter, who: Any) -> None:
    """The room routes every participant uses, on ``target`` with ``who`` as the caller's
    dependency: signed-in members (patient, doctor) on :data:`router`, guests on
    :data:`guest_router`."""

    @target.get("/{appointment_id}", summary="The consultation's room")
    async def get_room(runtime: Runtime, appointment_id: RoomId,
                       principal: Principal = who) -> RoomOut:
        """Who waits, who is in; the window. 404 for anyone but the patient and doctor."""
        return await _room(runtime, principal, appointment_id)

    @target.post("/{appointment_id}/join", summary="Enter the room (the patient waits)")
    async def join(runtime: Runtime, janus: MediaServer, appointment_id: RoomId,
                   principal: Principal = who) -> JoinOut:
        """409 ``room-not-open`` / ``room-closed`` outside the window (with ``opens_at`` and
        ``closes_at``), 409 ``appointment-not-ready`` before payment, 403 after removal."""
        doc = await service.join(runtime, janus, principal, appointment_id)
        settings = runtime.settings
        return JoinOut(participant=ParticipantOut.of(doc),
                       ice_servers=service.ice_servers(settings, principal, utcnow()))  # type: ignore[arg-type]

    @target.post("/{appointment_id}/leave", summary="Leave the room")
    async def leave(runtime: Runtime, janus: MediaServer, appointment_id: RoomId,
                    principal: Principal = who) -> ParticipantOut:
        return ParticipantOut.of(await service.leave(runtime, janus, principal, appointment_id))

    @target.put("/{appointment_id}/recordings/consent", summary="Give or withdraw my consent")
    async def consent(runtime: Runtime, janus: MediaServer, appointment_id: RoomId,
                      body: ConsentIn, principal: Principal = who) -> ParticipantOut:
        """Each participant's own; withdrawing it stops a recording under way at once."""
        return ParticipantOut.of(await recording.consent(runtime, janus, principal,
                                                         appointment_id, body.given))


def media_routes(target: APIRouter, who: Any) -> None:
    """The signalling routes (JSEP over HTTP) every participant uses, likewise."""

    @target.post("/{appointment_id}/media/publish", summary="Send my audio and video")
    async def publish(runtime: Runtime, janus: MediaServer, appointment_id: RoomId, body: Offer,
                      principal: Principal = who) -> PublishOut:
        """Admitted participants only (409 ``not-admitted``); publishing again replaces the
        earlier connection (a reconnection, no new admission)."""
        feed, answer = await service.publish(runtime, janus, principal, appointment_id,
                                             body.model_dump())
        return PublishOut(feed=feed, jsep=SessionDescription.model_validate(answer))

    @target.get("/{appointment_id}/media/feeds", summary="Other participants' live feeds")
    async def feeds(runtime: Runtime, janus: MediaServer, appointment_id: RoomId,
                    principal: Principal = who) -> list[FeedOut]:
        return [FeedOut.model_validate(f)
                for f in await service.feeds(runtime, janus, principal, appointment_id)]

    @target.post("/{appointment_id}/media/subscriptions", status_code=201,
                 summary="Receive a feed: the media server's offer")
    async def subscribe(runtime: Runtime, janus: MediaServer, appointment_id: RoomId,
                        body: SubscribeIn, principal: Principal = who) -> SubscriptionOut:
        subscription, offer = await service.subscribe(runtime, janus, principal, appointment_id,
                                                      body.feed)
        return SubscriptionOut(subscription_id=subscription, feed=body.feed,
                               jsep=SessionDescription.model_validate(offer))

    @target.post("/{appointment_id}/media/subscriptions/{subscription_id}/answer",
                 status_code=204, summary="My answer to a subscription's offer")
    async def answer(runtime: Runtime, janus: MediaServer, appointment_id: RoomId,
                     subscription_id: PartId, body: Answer,
                     principal: Principal = who) -> Response:
        await service.answer(runtime, janus, principal, appointment_id, subscription_id,
                             body.model_dump())
        return Response(status_code=204)


for _target, _who in ((router, Member), (guest_router, Guest)):
    room_routes(_target, _who)
    media_routes(_target, _who)


@router.post("/{appointment_id}/participants/{participant_id}/admit",
             summary="Admit a waiting participant (doctor)")
async def admit(runtime: Runtime, janus: MediaServer, appointment_id: RoomId,
                participant_id: PartId, principal: Principal = Host) -> ParticipantOut:
    """Admitting the patient starts the consultation and its encounter."""
    return ParticipantOut.of(await service.admit(runtime, janus, principal, appointment_id,
                                                 participant_id))


@router.post("/{appointment_id}/participants/{participant_id}/remove",
             summary="Remove a participant for good (doctor)")
async def remove(runtime: Runtime, janus: MediaServer, appointment_id: RoomId,
                 participant_id: PartId, principal: Principal = Host) -> ParticipantOut:
    return ParticipantOut.of(await service.remove(runtime, janus, principal, appointment_id,
                                                  participant_id))


@router.post("/{appointment_id}/end", summary="End the consultation (doctor)")
async def end(runtime: Runtime, janus: MediaServer, appointment_id: RoomId,
              principal: Principal = Host) -> RoomOut:
    await service.end(runtime, janus, principal, appointment_id)
    return await _room(runtime, principal, appointment_id)


@router.post("/{appointment_id}/recordings/start", status_code=201,
             summary="Start recording (doctor; everyone admitted has consented)")
async def start_recording(runtime: Runtime, janus: MediaServer, appointment_id: RoomId,
                          principal: Principal = Host) -> RecordingOut:
    """409 ``consent-missing`` (with ``missing`` participant ids) until all consent."""
    return RecordingOut.of(await recording.start(runtime, janus, principal, appointment_id))


@router.post("/{appointment_id}/recordings/stop", summary="Stop recording (doctor)")
async def stop_recording(runtime: Runtime, janus: MediaServer, appointment_id: RoomId,
                         principal: Principal = Host) -> RecordingOut:
    return RecordingOut.of(await recording.stop(runtime, janus, principal, appointment_id))


@router.get("/{appointment_id}/recordings", summary="The consultation's recordings")
async def list_recordings(runtime: Runtime, appointment_id: RoomId,
                          principal: Principal = Member) -> list[RecordingOut]:
    return [RecordingOut.of(r)
            for r in await recording.recordings(runtime, principal, appointment_id)]


@router.get("/{appointment_id}/recordings/{recording_id}/files/{index}",
            response_class=StreamingResponse, summary="Play one file of a recording (WebM)",
            responses={200: {"content": {"video/webm": {}}}})
async def recording_file(runtime: Runtime, blobs: Blobs, appointment_id: RoomId,
                         recording_id: PartId, index: Annotated[int, Path(ge=0, le=64)],
                         principal: Principal = Member) -> StreamingResponse:
    """Never cached (``no-store``); ``recording.accessed`` is recorded first."""
    _, file = await recording.file_of(runtime, principal, appointment_id, recording_id,
                                      index)
    return StreamingResponse(blobs.stream(file["blob"]["key"]), media_type="video/webm",
                             headers={"Content-Length": str(file["blob"]["size"]),
                                      **NO_STORE, "Content-Disposition":
                                      f'inline; filename="{recording_id}-{index}.webm"'})

@router.get("/{appointment_id}/recordings/{recording_id}/files/{index}/link",
            summary="A short-lived playback link to one file of a recording")
async def recording_link(runtime: Runtime, blobs: Blobs, response: Response,
                         appointment_id: RoomId, recording_id: PartId,
                         index: Annotated[int, Path(ge=0, le=64)],
                         principal: Principal = Member) -> LinkOut:
    """``url`` is a presigned S3 GET valid ``link_ttl_seconds`` (60) where S3 has an
    address clients reach (``S3_PUBLIC_ENDPOINT_URL``), for a ``<video>`` element that
    cannot send a token; else ``None`` and clients play ``file`` through the gateway.
    Issuing it is a ``recording.accessed``; the answer is never cached."""
    _, file = await recording.file_of(runtime, principal, appointment_id, recording_id,
                                      index)
    ttl = runtime.settings.link_ttl_seconds  # type: ignore[attr-defined]
    response.headers.update(NO_STORE)
    url = (blobs.presigned_get(file["blob"]["key"], ttl=ttl)
           if blobs.settings.s3_public_endpoint_url else None)
    return LinkOut(url=url, expires_in=ttl, file=f"{router.prefix}/{appointment_id}/"
                   f"recordings/{recording_id}/files/{index}")


@router.get("/{appointment_id}/quality", summary="Participants' connection quality (doctor)")
async def connection_quality(runtime: Runtime, janus: MediaServer, appointment_id: RoomId,
                             principal: Principal = Host) -> list[QualityOut]:
    """Bitrate, packet loss and round trip of each participant's media as the media
    server receives it (no addresses)."""
    return [QualityOut.model_validate(q)
            for q in await service.quality(runtime, janus, principal, appointment_id)]


@router.post("/{appointment_id}/guests", status_code=201,
             summary="Invite a guest by a single-use link (doctor)")
async def invite(runtime: Runtime, appointment_id: RoomId, body: InviteIn,
                 principal: Principal = Host) -> GuestLinkOut:
    """The link's token is shown only in this answer; the guest redeems it once."""
    doc, token = await guests.invite(runtime, principal, appointment_id, body.kind)
    return GuestLinkOut(invitation_id=doc["_id"], kind=doc["kind"], token=token,
                        link=f"/app/teleconsultation/#guest={token}",
                        expires_at=doc["expires_at"])


@guest_router.post("/redeem", summary="Exchange a guest link for a guest session (public)")
async def redeem(runtime: Runtime, body: RedeemIn) -> GuestSessionOut:
    """Once per link: a second use gets 410 ``guest-link-spent``. The session secret goes
    in ``X-Guest-Token`` on the guest routes
    (``/api/v1/teleconsultations/guest/{appointment_id}/…``)."""
    doc, secret = await guests.redeem(runtime, body.token)
    return GuestSessionOut(appointment_id=doc["room_id"], guest_token=secret,
                           participant_user_id=guests.GUEST_PREFIX + doc["_id"],
                           expires_at=doc["expires_at"])


@client_router.get("/", response_class=Response, summary="The browser client (HTML)",
                   responses={200: {"content": {"text/html": {}}}})
async def client_page() -> Response:
    """Opened as ``/app/teleconsultation/#appointment=<id>&token=<access token>``; served
    with a Content-Security-Policy that allows only its own script."""
    return Response(CLIENT_HTML, media_type="text/html",
                    headers={"Content-Security-Policy": CLIENT_CSP, **NO_STORE})


@client_router.get("/client.js", response_class=Response, summary="The browser client (JS)",
                   responses={200: {"content": {"text/javascript": {}}}})
async def client_script() -> Response:
    return Response(CLIENT_JS, media_type="text/javascript",
                    headers={"Content-Security-Policy": CLIENT_CSP, **NO_STORE})
