"""Which address the throttle counts: the peer, or X-Forwarded-For behind the gateway."""

from __future__ import annotations


def test_client_address_behind_trusted_proxies() -> None:
    from starlette.requests import Request

    from healthflow.auth.api import client_ip

    def request(peer: str, forwarded: str | None) -> Request:
        headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
        return Request({"type": "http", "client": (peer, 5000), "headers": headers})

    proxies = ["10.0.0.0/8", "127.0.0.1"]
    assert client_ip(request("203.0.113.9", "198.51.100.1"), proxies) == "203.0.113.9"
    assert client_ip(request("10.1.2.3", "198.51.100.1"), proxies) == "198.51.100.1"
    assert client_ip(request("10.1.2.3", "6.6.6.6, 198.51.100.1, 10.9.9.9"),
                     proxies) == "198.51.100.1"
    assert client_ip(request("127.0.0.1", None), proxies) == "127.0.0.1"
    assert client_ip(request("10.1.2.3", "garbage"), proxies) == "10.1.2.3"
