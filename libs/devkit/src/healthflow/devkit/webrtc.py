"""A WebRTC peer as a client app would be, for tests and benchmarks: aiortc
(https://aiortc.readthedocs.io) sending a camera and a microphone (generated frames and
silence) and receiving the others' feeds, signalling through the teleconference API
(``/api/v1/teleconsultations/{appointment_id}/…``) over any httpx client (in-process or
through the gateway).

aiortc gathers every ICE candidate before it gives its SDP, so no trickle ICE is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from av import VideoFrame

API = "/api/v1/teleconsultations"
VIDEO_CLOCK = 90000  # RTP clock rate of video (RFC 3551)


class ColourBars(MediaStreamTrack):
    """A 320×240 camera at ``fps`` frames per second whose picture moves (a coder
    sends real changes, not one repeated key frame)."""

    kind = "video"

    def __init__(self, fps: int = 15) -> None:
        super().__init__()
        self.fps = fps
        self.sent = 0
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.sent / self.fps
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        picture = np.zeros((240, 320, 3), np.uint8)
        x = (self.sent * 4) % 320
        picture[:, x:x + 40] = (255, 255, 255)
        picture[:, :, 1] = 128
        frame = VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts = self.sent * VIDEO_CLOCK // self.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.sent += 1
        return frame


@dataclass
class Received:
    """What arrived of one remote feed: frames by kind."""

    feed: str
    counts: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    first_at: float | None = None  # time.monotonic() of the first video frame


class Peer:
    """One participant's app: ``join``, ``publish`` (camera and microphone), ``watch``
    every other feed, count what arrives."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str],
                 appointment_id: str, *, guest: bool = False) -> None:
        """``guest``: the guest routes (``headers`` then carry ``X-Guest-Token``)."""
        self.http = http
        self.headers = headers
        self.base = f"{API}/guest/{appointment_id}" if guest else f"{API}/{appointment_id}"
        self.ice_servers: list[dict[str, Any]] = []
        self.camera = ColourBars()
        self.publisher: RTCPeerConnection | None = None
        self.subscribers: list[RTCPeerConnection] = []
        self.received: dict[str, Received] = {}
        self.feed: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _config(self) -> RTCConfiguration:
        return RTCConfiguration([RTCIceServer(**s) for s in self.ice_servers])

    async def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return await self.http.request(method, f"{self.base}{path}", headers=self.headers,
                                       **kw)

    async def join(self) -> dict[str, Any]:
        response = await self.call("POST", "/join")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        self.ice_servers = body["ice_servers"]
        return body

    async def publish(self) -> httpx.Response:
        """Offers the camera and a silent microphone; applies the answer when given."""
        if self.publisher is not None:
            await self.publisher.close()
        pc = RTCPeerConnection(self._config())
        self.publisher = pc
        pc.addTrack(self.camera)
        pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        response = await self.call("POST", "/media/publish", json={
            "type": "offer", "sdp": pc.localDescription.sdp})
        if response.status_code == 200:
            body = response.json()
            self.feed = body["feed"]
            await pc.setRemoteDescription(RTCSessionDescription(**body["jsep"]))
        return response

    async def feeds(self) -> list[dict[str, Any]]:
        response = await self.call("GET", "/media/feeds")
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return found

    async def watch(self, feed: str) -> Received:
        """Subscribes to ``feed`` and counts its frames as they arrive."""
        response = await self.call("POST", "/media/subscriptions", json={"feed": feed})
        response.raise_for_status()
        body = response.json()
        pc = RTCPeerConnection(self._config())
        self.subscribers.append(pc)
        received = self.received.setdefault(feed, Received(feed))

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.create_task(self._count(track, received)))

        await pc.setRemoteDescription(RTCSessionDescription(**body["jsep"]))
        await pc.setLocalDescription(await pc.createAnswer())
        answered = await self.call(
            "POST", f"/media/subscriptions/{body['subscription_id']}/answer",
            json={"type": "answer", "sdp": pc.localDescription.sdp})
        answered.raise_for_status()
        return received

    async def _count(self, track: MediaStreamTrack, received: Received) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                received.counts[track.kind] += 1
                if track.kind == "video" and received.first_at is None:
                    received.first_at = time.monotonic()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for pc in [*self.subscribers, *([self.publisher] if self.publisher else [])]:
            await pc.close()
        self.subscribers.clear()
        self.publisher = None
