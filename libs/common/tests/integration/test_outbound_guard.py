"""The outbound URL guard with the system's real resolver: HTTPS only, allow-listed hosts,
and never a loopback, private, link-local or metadata address after resolution."""

from __future__ import annotations

import pytest

from healthflow.common.outbound import OutboundPolicy, UnsafeURL, check_addresses, check_url

PUSH = OutboundPolicy(allowed_hosts=[
    ".push.example", "localhost", "127.0.0.1", "127.1", "2130706433", "::ffff:127.0.0.1",
    "169.254.169.254", "10.1.2.3", "8.8.8.8", "::1"])


@pytest.mark.parametrize(("url", "reason"), [
    ("https://localhost/push/1", "loopback"),  # a name: the system resolver says 127.0.0.1
    ("https://127.1/push/1", "loopback"),  # the short inet_aton form
    ("https://2130706433/push/1", "loopback"),  # 127.0.0.1 written as one decimal number
    ("https://[::ffff:127.0.0.1]/push/1", "loopback"),  # IPv4-mapped IPv6
    ("https://[::1]/push/1", "loopback"),
    ("https://169.254.169.254/latest/meta-data/", "metadata"),
    ("https://10.1.2.3/push/1", "private"),
])
async def test_names_and_literals_that_reach_internal_addresses_are_refused(url, reason):
    with pytest.raises(UnsafeURL, match=reason) as refused:
        await check_url(url, PUSH)
    assert refused.value.status == 422
    assert refused.value.extensions == {"problem": "unsafe-url"}


@pytest.mark.parametrize(("url", "why"), [
    ("http://8.8.8.8/push/1", "https"),
    ("https://evil.example/push/1", "not an allowed"),
    ("https://push.example.evil.example/push/1", "not an allowed"),
    ("https://user:pw@8.8.8.8/push/1", "user information"),
    ("https://nothing.push.example/push/1", "does not resolve"),
])
async def test_scheme_host_and_user_info_are_checked(url, why):
    with pytest.raises(UnsafeURL, match=why):
        await check_url(url, PUSH)


async def test_a_public_address_on_the_list_passes():
    assert await check_url("https://8.8.8.8/push/1", PUSH) == "https://8.8.8.8/push/1"


def test_every_resolved_address_must_be_public():
    # one private address among public ones is enough to refuse (DNS answers rotate)
    with pytest.raises(UnsafeURL, match="private"):
        check_addresses("fcm.push.example", ["142.250.1.1", "192.168.0.7"], PUSH)
    with pytest.raises(UnsafeURL, match="metadata"):
        check_addresses("fcm.push.example", ["fd00:ec2::254"], PUSH)
    check_addresses("fcm.push.example", ["142.250.1.1", "2a00:1450:4001::200e"], PUSH)


async def test_a_development_policy_allows_a_loopback_sink_only_when_asked():
    sink = OutboundPolicy(allowed_hosts=["127.0.0.1"], require_https=False,
                          allow_private=True)
    assert await check_url("http://127.0.0.1:9/push/1", sink)
    with pytest.raises(UnsafeURL, match="https"):
        await check_url("ftp://127.0.0.1/push/1", sink)
