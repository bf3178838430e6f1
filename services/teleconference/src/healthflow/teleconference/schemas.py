"""Request and response bodies of ``/api/v1/teleconsultations``. Times are aware UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from healthflow.common.mongo import Document
from healthflow.teleconference.domain import GuestKind

SDP_MAX = 64 * 1024  # an SDP of a few audio and video sections is a few kB


class SessionDescription(BaseModel):
    """An RTCSessionDescription (W3C WebRTC §4.7; SDP as RFC 8866 text, RFC 8829 JSEP
    rules): ``type`` offer | answer."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["offer", "answer"]
    sdp: str = Field(min_length=10, max_length=SDP_MAX)


class Offer(SessionDescription):
    type: Literal["offer"]


class Answer(SessionDescription):
    type: Literal["answer"]


class SubscribeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feed: str = Field(min_length=1, max_length=64)


class ParticipantOut(BaseModel):
    """One participant: ``role`` patient | doctor, ``state`` waiting | admitted | left |
    removed."""

    id: str
    user_id: str
    role: str
    state: str
    joined_at: datetime
    admitted_at: datetime | None
    left_at: datetime | None

    @classmethod
    def of(cls, doc: Document) -> ParticipantOut:
        return cls.model_validate({**doc, "id": doc["_id"]})


class RoomOut(BaseModel):
    """The room of an online appointment: ``status`` scheduled | in_progress | ended |
    cancelled; joins are taken from ``opens_at`` until ``closes_at``; ``you`` is the
    caller's role."""

    appointment_id: str
    status: str
    start: datetime
    end: datetime
    opens_at: datetime
    closes_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    you: str
    participants: list[ParticipantOut]


class JoinOut(BaseModel):
    """The caller's participant and the ICE servers (RTCIceServer dictionaries, TURN
    credentials short-lived) to build the peer connection with."""

    participant: ParticipantOut
    ice_servers: list[dict[str, Any]]


class PublishOut(BaseModel):
    """The caller's feed id and Janus's SDP answer to their offer."""

    feed: str
    jsep: SessionDescription


class FeedOut(BaseModel):
    """Another participant's live feed; ``since`` (aware UTC) is when it was last
    published: a later one means a reconnection, to be subscribed to again."""

    feed: str
    participant_id: str
    role: str
    since: datetime | None = None


class SubscriptionOut(BaseModel):
    """A subscription to a feed and the SDP offer to answer at
    ``…/media/subscriptions/{subscription_id}/answer``."""

    subscription_id: str
    feed: str
    jsep: SessionDescription


class ConsentIn(BaseModel):
    """``given``: true gives consent to recording, false withdraws it."""

    model_config = ConfigDict(extra="forbid")

    given: bool


class RecordingFileOut(BaseModel):
    """One participant's audio and video as one WebM: ``size`` bytes, ``sha256`` of its
    bytes (64 hex digits), ``duration_seconds``."""

    participant_id: str
    role: str | None
    size: int
    sha256: str
    duration_seconds: float
    video_frames: int


class RecordingOut(BaseModel):
    """A recording: ``status`` recording | processing | available | failed | deleted;
    ``stop_reason`` stopped | consent_withdrawn | unconsented_participant | ended;
    files are deleted after ``delete_after``."""

    id: str
    status: str
    started_at: datetime
    stopped_at: datetime | None
    stop_reason: str | None
    delete_after: datetime | None
    files: list[RecordingFileOut]

    @classmethod
    def of(cls, doc: Document) -> RecordingOut:
        return cls.model_validate({
            **doc, "id": doc["_id"],
            "files": [{**f, "size": f["blob"]["size"]} for f in doc.get("files", [])]})


class InviteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: GuestKind


class GuestLinkOut(BaseModel):
    """A single-use guest link (``token`` shown only once), valid until ``expires_at``."""

    invitation_id: str
    kind: str
    token: str
    link: str
    expires_at: datetime


class RedeemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=16, max_length=128)


class GuestSessionOut(BaseModel):
    """The guest's session secret, for ``X-Guest-Token``; ``participant_user_id`` is how
    the room lists them."""

    appointment_id: str
    guest_token: str
    participant_user_id: str
    expires_at: datetime


class MediumQuality(BaseModel):
    """One medium of a participant's connection (see
    :func:`healthflow.teleconference.domain.link_quality` for units)."""

    kind: str | None
    bitrate_kbps: float
    packets: int
    lost: int
    loss_percent: float
    rtt_ms: int
    jitter: int
    link_quality: int


class QualityOut(BaseModel):
    participant_id: str
    role: str
    media: list[MediumQuality]


class LinkOut(BaseModel):
    """A playback link: ``url`` (presigned, ``expires_in`` seconds) or ``None`` where S3
    is internal; ``file`` is the route through the gateway either way."""

    url: str | None
    expires_in: int
    file: str
