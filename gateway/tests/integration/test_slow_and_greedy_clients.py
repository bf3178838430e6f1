"""The edge under slow and greedy clients: a body deadline (408), a connection pool per
upstream, caps on concurrent requests and open streams per address and per user
(429 with Retry-After), internal-only /metrics and readiness details, and no
wildcard CORS origin with credentials."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from pydantic import ValidationError
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from healthflow.common.errors import PROBLEM_JSON
from healthflow.common.settings import ConfigurationError, load_settings
from healthflow.gateway.settings import GatewaySettings

from .conftest import wait_until


def xff(address: str) -> dict[str, str]:
    """The client address as a trusted proxy in front of the gateway reports it."""
    return {"X-Forwarded-For": address}


def raw_request(port: int, head: str, body: bytes, wait: float) -> tuple[bytes, float]:
    """Send ``head`` and ``body`` (which falls short of its Content-Length) on a raw socket;
    the first bytes of the answer and the seconds it took (or b"" after ``wait`` s)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(head.encode() + body)
        try:
            return sock.recv(4096), time.monotonic() - started
        except TimeoutError:
            return b"", time.monotonic() - started


def test_a_body_that_does_not_arrive_in_time_gets_408(start_gateway, platform):
    gateway = start_gateway(body_timeout=0.5)
    token = platform.tokens.headers()["Authorization"]
    head = (f"POST /api/v1/patients/echo HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    answer, seconds = raw_request(gateway.port, head, b'{"a": ', wait=5)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert PROBLEM_JSON.encode() in answer
    assert seconds < 3


def test_each_upstream_has_its_own_connection_pool(start_gateway, platform):
    gateway = start_gateway(max_connections=2, connect_timeout=0.5)
    auth = platform.tokens.headers()
    slow = gateway.url + "/api/v1/patients/slow?seconds=3"
    with ThreadPoolExecutor(max_workers=2) as pool:
        held = [pool.submit(httpx.get, slow, headers=auth, timeout=10) for _ in range(2)]
        time.sleep(0.5)  # both of the patient upstream's connections are taken
        other = httpx.get(gateway.url + "/api/v1/auth/echo", headers=auth, timeout=10)
        assert other.status_code == 200, other.text
        assert [h.result().status_code for h in held] == [200, 200]


def test_concurrent_requests_are_capped_per_client_address(start_gateway, platform):
    gateway = start_gateway(trusted_proxy_hops=1, address_max_requests=2)
    url = gateway.url + "/api/v1/patients/slow?seconds=1.5"
    with ThreadPoolExecutor(max_workers=2) as pool:
        held = [pool.submit(httpx.get, url, headers=xff("198.51.100.7")
                            | platform.tokens.headers(f"u{i}"), timeout=10) for i in range(2)]
        time.sleep(0.4)
        refused = httpx.get(url, headers=xff("198.51.100.7") | platform.tokens.headers("u3"))
        other = httpx.get(gateway.url + "/api/v1/patients/echo",
                          headers=xff("198.51.100.8") | platform.tokens.headers("u4"))
        assert [h.result().status_code for h in held] == [200, 200]
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.headers["retry-after"] == "1"
    assert "client address" in refused.json()["detail"]
    assert other.status_code == 200
    # the slots come back when the requests end
    again = httpx.get(gateway.url + "/api/v1/patients/echo",
                      headers=xff("198.51.100.7") | platform.tokens.headers("u3"))
    assert again.status_code == 200


def test_open_streams_are_capped_per_user_and_per_address(start_gateway, platform):
    gateway = start_gateway(trusted_proxy_hops=1, user_max_streams=1, address_max_streams=2)
    state = platform.patient_state
    state.sse_release.clear()
    sse = gateway.url + "/api/v1/patients/sse"
    events = {"Accept": "text/event-stream"}
    alice = platform.tokens.headers("alice")
    try:
        with httpx.stream("GET", sse, headers=alice | events | xff("198.51.100.20"),
                          timeout=10) as first:
            assert first.status_code == 200
            second = httpx.get(sse, headers=alice | events | xff("198.51.100.21"), timeout=10)
            assert second.status_code == 429 and "user" in second.json()["detail"]
            # her ordinary requests are not streams
            echo = httpx.get(gateway.url + "/api/v1/patients/echo", headers=alice)
            assert echo.status_code == 200
            ws_url = gateway.url.replace("http", "ws") + "/api/v1/patients/ws"
            bob = platform.tokens.headers("bob") | xff("198.51.100.20")
            with connect(ws_url, additional_headers=bob, open_timeout=5):
                # the address now holds two streams (alice's SSE, bob's WebSocket)
                with pytest.raises(InvalidStatus) as refused:
                    connect(ws_url, additional_headers=platform.tokens.headers("carol")
                            | xff("198.51.100.20"), open_timeout=5)
                assert refused.value.response.status_code == 429
    finally:
        state.sse_release.set()


def test_metrics_and_readiness_details_are_internal(start_gateway, platform):
    gateway = start_gateway(trusted_proxy_hops=1, metrics_token="scrape-secret",
                            readiness_requires=["auth", "patient"])
    outside = xff("203.0.113.9")
    metrics = httpx.get(gateway.url + "/metrics", headers=outside)
    assert metrics.status_code == 404
    assert metrics.headers["content-type"] == PROBLEM_JSON
    ready = httpx.get(gateway.url + "/readyz", headers=outside)
    assert ready.status_code == 200 and ready.json() == {"status": "ready",
                                                         "service": "gateway"}
    scraper = outside | {"Authorization": "Bearer scrape-secret"}
    assert httpx.get(gateway.url + "/metrics", headers=scraper).status_code == 200
    assert "auth" in httpx.get(gateway.url + "/readyz", headers=scraper).json()["checks"]
    wrong = outside | {"Authorization": "Bearer guess"}
    assert httpx.get(gateway.url + "/metrics", headers=wrong).status_code == 404


def test_a_wildcard_cors_origin_is_refused_at_start_up(monkeypatch):
    with pytest.raises(ValidationError, match="credentials"):
        GatewaySettings(cors_origins=["*"])
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", '["https://app.example", "*"]')
    with pytest.raises(ConfigurationError, match="GATEWAY_CORS_ORIGINS"):
        load_settings(GatewaySettings)


def test_slots_are_given_back_when_a_client_leaves_mid_body(start_gateway, platform):
    gateway = start_gateway(trusted_proxy_hops=1, address_max_requests=1, body_timeout=5)
    token = platform.tokens.headers()["Authorization"]
    head = (f"POST /api/v1/patients/echo HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
            "X-Forwarded-For: 198.51.100.30\r\nContent-Length: 100\r\n\r\n")
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.sendall(head.encode() + b"{")
    url = gateway.url + "/api/v1/patients/echo"
    headers = platform.tokens.headers() | xff("198.51.100.30")
    wait_until(lambda: httpx.get(url, headers=headers).status_code == 429, timeout=5)
    sock.close()
    wait_until(lambda: httpx.get(url, headers=headers).status_code == 200, timeout=5)
