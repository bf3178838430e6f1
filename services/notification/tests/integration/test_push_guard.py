"""Web Push goes only to push services: HTTPS endpoints on allow-listed hosts that resolve
to public addresses, checked when subscribing and again when sending; a user holds at
most a few subscriptions (issue 17)."""

from __future__ import annotations

import aiohttp
import pytest

from healthflow.devkit.sandbox import PushSink, browser_subscription
from healthflow.notification.providers import GuardedResolver, PermanentError, PushSender
from healthflow.notification.settings import Settings

from ..conftest import Notif

BASE = "/api/v1/notifications"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The production policy (no development sink), 'localhost' listed as a push host so
    that only the resolved address can refuse it, a public address literal standing for a
    push service (no DNS needed), and at most two subscriptions."""
    return settings.model_copy(update={
        "push_allowed_hosts": ["fcm.googleapis.com", "localhost", "8.8.8.8"],
        "push_allow_insecure_sink": False, "push_max_subscriptions": 2})


@pytest.mark.parametrize(("endpoint", "why"), [
    ("https://localhost/push/abc", "loopback"),  # resolved by the system resolver
    ("http://fcm.googleapis.com/fcm/send/abc", "https"),
    ("https://push.attacker.example/abc", "not an allowed"),
    ("https://169.254.169.254/latest/meta-data/", "not an allowed"),
])
async def test_subscriptions_to_anything_but_a_push_service_are_refused(
        notif: Notif, endpoint: str, why: str) -> None:
    body = browser_subscription("https://placeholder.invalid/").to_json() | {
        "endpoint": endpoint}
    refused = await notif.client.post(f"{BASE}/push/subscriptions",
                                      headers=notif.headers("pat-g"), json=body)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert why in refused.json()["detail"] and refused.json()["problem"] == "unsafe-url"
    assert await notif.db["push_subscriptions"].count_documents({}) == 0


async def test_a_user_holds_at_most_the_configured_number_of_subscriptions(
        notif: Notif) -> None:
    me = notif.headers("pat-many")
    browsers = [browser_subscription(f"https://8.8.8.8/push/{i}").to_json()
                for i in range(3)]
    for browser in browsers[:2]:
        created = await notif.client.post(f"{BASE}/push/subscriptions", headers=me,
                                          json=browser)
        assert created.status_code == 201, created.text
    again = await notif.client.post(f"{BASE}/push/subscriptions", headers=me, json=browsers[1])
    assert again.status_code == 201  # the same browser again is not a new one
    third = await notif.client.post(f"{BASE}/push/subscriptions", headers=me, json=browsers[2])
    assert third.status_code == 409 and "at most 2" in third.json()["detail"]
    assert await notif.db["push_subscriptions"].count_documents({"user_id": "pat-many"}) == 2


async def test_sending_checks_the_endpoint_again_and_connects_only_to_public_addresses(
        settings: Settings, push_sink: PushSink) -> None:
    # a subscription stored before the policy changed: nothing leaves the service
    sender = PushSender(settings, "unused-vapid-key")
    stored = browser_subscription(f"https://localhost:{push_sink.port}/push/old").to_json()
    with pytest.raises(PermanentError, match="loopback"):
        await sender.send(subscription=stored, payload={"title": "t"})
    await sender.close()
    assert push_sink.received == []
    # the session's resolver refuses internal addresses at connection time (DNS rebinding)
    resolver = GuardedResolver(settings.push_policy)
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=resolver)) as session:
        with pytest.raises(aiohttp.ClientConnectorError, match="loopback"):
            await session.post(f"http://localhost:{push_sink.port}/push/x", data=b"x")
    assert push_sink.received == []
