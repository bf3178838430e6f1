"""The Janus adapter: the teleconference service's only way to the media server.

Janus (https://janus.conf.meetecho.com/docs/rest.html) is driven over its HTTP
transport on the internal network: ``POST /janus`` creates a session, ``POST
/janus/<session>`` attaches a handle to the VideoRoom plugin, ``POST
/janus/<session>/<handle>`` sends a plugin message, and ``GET /janus/<session>``
long-polls the session's events (asynchronous answers such as ``joined`` with the SDP
answer come that way, matched by ``transaction``). Every request carries the
``apisecret``; rooms are created with the VideoRoom ``admin_key``; the admin API
(``admin_secret``) answers the per-handle WebRTC statistics. Clients never see any of
these: they send their SDP to this service, which passes it on.

Each participant's publisher and each of their subscriptions gets a Janus session of
its own, so that one long-poll never takes another's answer.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import httpx

from healthflow.common.problems import ServiceUnavailable
from healthflow.teleconference.settings import Settings

ROOM_EXISTS = 427  # JANUS_VIDEOROOM_ERROR_ROOM_EXISTS
NO_SUCH_ROOM = 426  # JANUS_VIDEOROOM_ERROR_NO_SUCH_ROOM
NO_SUCH_FEED = 428  # JANUS_VIDEOROOM_ERROR_NO_SUCH_FEED
ID_EXISTS = 436  # JANUS_VIDEOROOM_ERROR_ID_EXISTS
NO_SUCH_SESSION = 458  # JANUS_ERROR_SESSION_NOT_FOUND


class JanusError(Exception):
    """Janus refused a request: ``code`` is Janus's or the VideoRoom plugin's error code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"Janus error {code}: {reason}")
        self.code = code
        self.reason = reason


Jsep = dict[str, str]


class Janus:
    """A client of one Janus server (``settings.janus_url``)."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        self.url = settings.janus_url.rstrip("/")
        self.admin_url = settings.janus_admin_url.rstrip("/")
        self._secret = settings.janus_api_secret.get_secret_value()
        self._admin_secret = settings.janus_admin_secret.get_secret_value()
        self._room_key = settings.janus_room_admin_key.get_secret_value()
        # no proxies from the environment: the secrets stay on the internal network
        self.http = httpx.AsyncClient(timeout=settings.janus_timeout_seconds, trust_env=False,
                                      transport=transport)
        self._ids = itertools.count()
        self._prefix = secrets.token_hex(4)

    async def aclose(self) -> None:
        await self.http.aclose()

    def _transaction(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.http.post(url, json=body)
            answer: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ServiceUnavailable("the media server does not answer; try again") from exc
        _raise_for(answer)
        return answer

    async def request(self, path: str, janus: str, **fields: Any) -> dict[str, Any]:
        """One client-API request; its synchronous answer.

        Raises:
            JanusError: Janus (or the plugin, synchronously) refused it.
            ServiceUnavailable: (503) Janus cannot be reached.
        """
        body = {"janus": janus, "transaction": self._transaction(), "apisecret": self._secret,
                **fields}
        return await self._post(f"{self.url}{path}", body)

    async def create_session(self) -> int:
        return int((await self.request("", "create"))["data"]["id"])

    async def attach(self, session: int) -> int:
        answer = await self.request(f"/{session}", "attach", plugin="janus.plugin.videoroom")
        return int(answer["data"]["id"])

    async def open_handle(self) -> tuple[int, int]:
        """A new session with one VideoRoom handle: ``(session, handle)``."""
        session = await self.create_session()
        return session, await self.attach(session)

    async def destroy_session(self, session: int) -> None:
        """Ends the session (its handles hang up); an unknown session is already gone."""
        try:
            await self.request(f"/{session}", "destroy")
        except JanusError as exc:
            if exc.code != NO_SUCH_SESSION:
                raise

    async def keepalive(self, session: int) -> bool:
        """``False`` when Janus no longer knows the session."""
        try:
            await self.request(f"/{session}", "keepalive")
        except JanusError as exc:
            if exc.code == NO_SUCH_SESSION:
                return False
            raise
        return True

    async def message(self, session: int, handle: int, body: dict[str, Any],
                      jsep: Jsep | None = None) -> tuple[dict[str, Any], Jsep | None]:
        """A VideoRoom request: its ``plugindata.data`` and JSEP, waiting for the
        asynchronous answer when Janus acknowledges first.

        Raises:
            JanusError: the plugin answered with an ``error_code``.
        """
        fields: dict[str, Any] = {"body": body}
        if jsep is not None:
            fields["jsep"] = jsep
        answer = await self.request(f"/{session}/{handle}", "message", **fields)
        if answer["janus"] == "ack":
            answer = await self._wait_for(session, answer["transaction"])
        data: dict[str, Any] = answer.get("plugindata", {}).get("data", {})
        if "error_code" in data:
            raise JanusError(int(data["error_code"]), str(data.get("error", "")))
        return data, answer.get("jsep")

    async def _wait_for(self, session: int, transaction: str) -> dict[str, Any]:
        """Long-polls the session until the event answering ``transaction`` arrives
        (other events of the session are of no use to this service and are dropped)."""
        for _ in range(20):
            try:
                response = await self.http.get(
                    f"{self.url}/{session}",
                    params={"maxev": 10, "apisecret": self._secret}, timeout=35.0)
                events = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise ServiceUnavailable("the media server does not answer; try again") from exc
            for event in events if isinstance(events, list) else [events]:
                _raise_for(event)
                if event.get("transaction") == transaction:
                    return dict(event)
        raise ServiceUnavailable("the media server did not answer in time")

    # ------------------------------------------------------------------ rooms

    async def room_request(self, body: dict[str, Any], *, gone: tuple[int, ...] = ()
                           ) -> dict[str, Any] | None:
        """One VideoRoom request about a room, on a session of its own (destroyed after);
        its answer's data, or ``None`` when Janus answers one of the ``gone`` error codes
        (what the caller wanted is already so)."""
        session, handle = await self.open_handle()
        try:
            data, _ = await self.message(session, handle, body)
        except JanusError as exc:
            if exc.code in gone:
                return None
            raise
        finally:
            await self.destroy_session(session)
        return data

    async def create_room(self, room: str, secret: str, *, rec_dir: str,
                          publishers: int = 6) -> None:
        """A VideoRoom room ``room`` (string ids) guarded by ``secret``, recording (when
        enabled) into ``rec_dir`` (a path on Janus's machine); an existing one is kept.
        Video VP8 and audio Opus, what browsers and aiortc both offer."""
        await self.room_request({
            "request": "create", "room": room, "admin_key": self._room_key,
            "secret": secret, "publishers": publishers, "is_private": True,
            "videocodec": "vp8", "audiocodec": "opus", "notify_joining": True,
            "record": False, "lock_record": True, "rec_dir": rec_dir}, gone=(ROOM_EXISTS,))

    async def destroy_room(self, room: str, secret: str) -> None:
        """Every participant is hung up; a room Janus no longer has is already gone."""
        await self.room_request({"request": "destroy", "room": room, "secret": secret},
                                gone=(NO_SUCH_ROOM,))

    async def record(self, room: str, secret: str, on: bool) -> None:
        """Starts or stops recording every publisher of ``room`` (VideoRoom
        ``enable_recording``): one ``.mjr`` file per medium and publisher, named
        ``videoroom-<room>-user-<feed>-<n>-<audio|video>-<m>.mjr``. Stopping a room
        Janus no longer has is done already."""
        await self.room_request({"request": "enable_recording", "room": room,
                                 "secret": secret, "record": on},
                                gone=() if on else (NO_SUCH_ROOM,))

    async def set_rec_dir(self, room: str, secret: str, rec_dir: str) -> None:
        """Where ``room``'s next recordings go (VideoRoom ``edit``, ``new_rec_dir``)."""
        await self.room_request({"request": "edit", "room": room, "secret": secret,
                                 "new_rec_dir": rec_dir})

    async def kick(self, room: str, secret: str, feed: str) -> None:
        """Hangs ``feed`` up; one that has gone, or a room that has, is already out."""
        await self.room_request({"request": "kick", "room": room, "secret": secret,
                                 "id": feed}, gone=(NO_SUCH_ROOM, NO_SUCH_FEED))

    async def publishers(self, room: str) -> list[str]:
        """The ids of the feeds that publish media in ``room`` now."""
        data = await self.room_request({"request": "listparticipants", "room": room},
                                       gone=(NO_SUCH_ROOM,))
        return [str(p["id"]) for p in (data or {}).get("participants", [])
                if p.get("publisher")]

    # ------------------------------------------------------------------ admin API

    async def handle_stats(self, session: int, handle: int) -> dict[str, Any]:
        """The WebRTC statistics Janus keeps for a handle (admin API ``handle_info``):
        per medium, bytes and packets each way, lost packets and the round trip time
        the remote end reported in RTCP."""
        body = {"janus": "handle_info", "transaction": self._transaction(),
                "admin_secret": self._admin_secret}
        answer = await self._post(f"{self.admin_url}/{session}/{handle}", body)
        return dict(answer.get("info", {}))


def _raise_for(answer: dict[str, Any]) -> None:
    if answer.get("janus") == "error":
        error = answer.get("error", {})
        raise JanusError(int(error.get("code", 0)), str(error.get("reason", "")))
