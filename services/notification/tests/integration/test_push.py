"""Web Push (encrypted, VAPID-signed) to a loopback push service, and the SSE feed stream
over a real HTTP server."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from healthflow.devkit.sandbox import PushSink, browser_subscription, free_port
from healthflow.devkit.testing import TokenFactory, eventually
from healthflow.notification.app import create_app
from healthflow.notification.domain import SettableClock
from healthflow.notification.settings import Settings

from ..conftest import Notif, appointment, user_registered

START = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
BASE = "/api/v1/notifications"


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@asynccontextmanager
async def served(settings: Settings, tokens: TokenFactory,
                 clock: SettableClock) -> AsyncIterator[tuple[FastAPI, str]]:
    """The notification app on a real uvicorn server on loopback: (app, base URL)."""
    app = create_app(settings, clock=clock)
    app.state.verifier = tokens.verifier()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_config=None, lifespan="on"))
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, message="server did not start")
        yield app, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)


async def test_web_push_reaches_the_subscribed_browser_encrypted_and_signed(
        notif: Notif, push_sink: PushSink) -> None:
    key = (await notif.client.get(f"{BASE}/push/vapid-public-key")).json()["public_key"]
    assert len(_b64decode(key)) == 65  # an uncompressed P-256 point
    browser = browser_subscription(push_sink.endpoint("browser-1"))
    me = notif.headers("pat-w")
    created = await notif.client.post(f"{BASE}/push/subscriptions", headers=me,
                                      json=browser.to_json())
    assert created.status_code == 201, created.text
    taken = await notif.client.post(f"{BASE}/push/subscriptions",
                                    headers=notif.headers("someone-else"),
                                    json=browser.to_json())
    assert taken.status_code == 403

    await notif.deliver(user_registered("pat-w", phone=None))
    booked = appointment("appointment.booked", "appt-w", "pat-w", START)
    await notif.deliver(booked)
    await eventually(lambda: len(push_sink.received) == 1, message="no push arrived")
    push = push_sink.received[0]
    assert push.headers["Content-Encoding"] == "aes128gcm"
    headers = {name.lower(): value for name, value in push.headers.items()}
    assert "urgency" not in headers and "topic" not in headers  # RFC 8030: normal urgency
    assert headers["ttl"] == "3600"  # settings.push_ttl: the confirmation does not expire
    assert b"Your appointment" not in push.body  # the body is encrypted
    payload = json.loads(browser.decrypt(push.body))
    assert payload["title"] == "Your appointment is booked"
    assert "09:30 CET" in payload["body"]
    # VAPID (RFC 8292): "vapid t=<JWT>, k=<key>", the JWT signed by the published key
    scheme, _, params = push.headers["Authorization"].partition(" ")
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert scheme == "vapid" and fields["k"] == key
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _b64decode(key))
    claims = jwt.decode(fields["t"], public, algorithms=["ES256"],
                        audience=f"http://127.0.0.1:{push_sink.port}")
    assert claims["sub"] == "mailto:ops@healthflow.example"

    async def sent() -> bool:
        push_log = await notif.deliveries(source_id=booked.id, channel="push")
        return [d["status"] for d in push_log] == ["sent"]

    await eventually(sent, message="push delivery not logged as sent")

    # the browser unsubscribed: 410 Gone fails the delivery and forgets the endpoint
    push_sink.gone.add("browser-1")
    cancelled = appointment("appointment.cancelled", "appt-w", "pat-w", START,
                            status="cancelled", cancelled_by="pat-w",
                            cancelled_by_role="patient", reason_code="patient_request")
    await notif.deliver(cancelled)

    async def forgotten() -> bool:
        return await notif.db["push_subscriptions"].count_documents({}) == 0

    await eventually(forgotten, message="the gone subscription was not removed")

    async def failed() -> bool:
        push_log = await notif.deliveries(source_id=cancelled.id, channel="push")
        return [(d["status"], d["reason"]) for d in push_log] == [("failed", "refused")]

    await eventually(failed, message="the push to a gone subscription did not fail")


async def test_the_feed_streams_as_server_sent_events(
        settings: Settings, tokens: TokenFactory, clock: SettableClock) -> None:
    async with served(settings, tokens, clock) as (app, base_url):
        runtime = app.state.runtime
        consumer = runtime.consumer
        assert consumer is not None
        await consumer(user_registered("pat-sse"))
        headers = tokens.headers("pat-sse") | {"Accept": "text/event-stream"}
        received: list[dict[str, str]] = []
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=10) as http,
            http.stream("GET", f"{BASE}/stream", headers=headers) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            assert await anext(lines) == ": stream open"
            assert await anext(lines) == "retry: 3000"
            clock.advance(seconds=1)
            await consumer(appointment("appointment.booked", "appt-sse", "pat-sse", START))
            current: dict[str, str] = {}

            async def read_one() -> None:
                async for line in lines:
                    if not line and current.get("event"):
                        received.append(dict(current))
                        return
                    if line.startswith(":") or not line:
                        continue
                    name, _, value = line.partition(": ")
                    current[name] = value

            await asyncio.wait_for(read_one(), timeout=10)
        assert received[0]["event"] == "notification"
        item = json.loads(received[0]["data"])
        assert (item["template"], item["id"]) == ("appointment_booked", received[0]["id"])
        assert "09:30 CET" in item["body"]  # the welcome (older) was not replayed


async def test_the_stream_resumes_after_last_event_id(
        settings: Settings, tokens: TokenFactory, clock: SettableClock) -> None:
    """A client that reconnects with ``Last-Event-ID`` gets what it missed, once."""
    async with served(settings, tokens, clock) as (app, base_url):
        consumer = app.state.runtime.consumer
        await consumer(user_registered("pat-resume"))
        clock.advance(seconds=1)
        await consumer(appointment("appointment.booked", "appt-r1", "pat-resume", START))
        feed = await app.state.runtime.db["feed"].find(
            {"user_id": "pat-resume"}).sort("created_at", 1).to_list()
        welcome, booked = feed[0]["_id"], feed[1]["_id"]
        headers = tokens.headers("pat-resume") | {"Last-Event-ID": welcome}
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=10) as http,
            http.stream("GET", f"{BASE}/stream", headers=headers) as response,
        ):
            ids = []

            async def first_event() -> None:
                async for line in response.aiter_lines():
                    if line.startswith("id: "):
                        ids.append(line.removeprefix("id: "))
                        return

            await asyncio.wait_for(first_event(), timeout=10)
        assert ids == [booked]  # the missed item, not the one the client had
