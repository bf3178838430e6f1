"""Bodies stream through the gateway: a 50 MB upload with bounded gateway memory,
Server-Sent Events relayed as they happen, WebSocket sessions relayed both ways."""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from .conftest import wait_until

MIB = 1024 * 1024
CHUNK = 64 * 1024


def test_50mb_upload_streams_through_with_bounded_gateway_memory(platform, gateway_processes):
    env = platform.env(GATEWAY_POLICY_OVERRIDES=json.dumps(
        {"default": {"max_body_bytes": 64 * MIB}}))
    gateway = gateway_processes(env).wait_ready()
    auth = platform.tokens.headers()
    url = gateway.url + "/api/v1/patients/upload"
    # warm up: imports, connection pool, JWKS cache
    assert httpx.post(url, headers=auth, content=b"w" * CHUNK).status_code == 200
    baseline = gateway.rss_bytes()
    total = 50 * MIB
    chunks = total // CHUNK
    state = platform.patient_state
    digest = hashlib.sha256()
    seen = {"peak": baseline, "upstream_before_end": 0}

    def body():
        for index in range(chunks):
            chunk = bytes([index % 251]) * CHUNK
            digest.update(chunk)
            yield chunk
            if index == chunks // 4:
                # a quarter sent: the upstream must already be receiving (not buffered)
                wait_until(lambda: state.upload_bytes > 0, timeout=10)
                seen["upstream_before_end"] = state.upload_bytes
            if index % 32 == 0:
                seen["peak"] = max(seen["peak"], gateway.rss_bytes())

    started = time.monotonic()
    response = httpx.post(url, headers=auth | {"Content-Length": str(total)}, content=body(),
                          timeout=60)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.json() == {"size": total, "sha256": digest.hexdigest()}
    assert 0 < seen["upstream_before_end"] < total
    growth = seen["peak"] - baseline
    print(f"50 MiB upload in {elapsed:.2f} s; gateway RSS growth {growth / MIB:.1f} MiB")
    assert growth < 20 * MIB, f"gateway RSS grew by {growth / MIB:.1f} MiB"


def test_server_sent_events_are_relayed_as_they_happen(gateway, platform):
    state = platform.patient_state
    state.sse_release.clear()
    headers = platform.tokens.headers() | {"Accept": "text/event-stream"}
    with httpx.stream("GET", gateway.url + "/api/v1/patients/sse", headers=headers,
                      timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        received = []
        for line in lines:
            received.append(line)
            if line == "data: one":
                break
        # the first event arrived while the upstream still holds the second one back
        assert not state.sse_release.is_set()
        state.sse_release.set()
        for line in lines:
            received.append(line)
            if line == "data: two":
                break
    assert received == ["event: first", "data: one", "", "event: second", "data: two"]


def _ws_url(gateway, path: str) -> str:
    return "ws" + gateway.url.removeprefix("http") + path


def test_websocket_is_relayed_with_subprotocol_token_and_close_code(gateway, platform):
    token = platform.tokens.mint("ws-user", ["patient"])
    with connect(_ws_url(gateway, "/api/v1/patients/ws"), subprotocols=["healthflow.v1"],
                 additional_headers={"Authorization": f"Bearer {token}",
                                     "X-User-Id": "forged"},
                 open_timeout=5) as ws:
        assert ws.subprotocol == "healthflow.v1"
        hello = json.loads(ws.recv(timeout=5))
        assert hello == {"subprotocol": "healthflow.v1", "authorization": f"Bearer {token}",
                         "x-user-id": "ws-user", "query": ""}
        ws.send("hi")
        assert ws.recv(timeout=5) == "echo:hi"
        ws.send(b"abc")
        assert ws.recv(timeout=5) == b"cba"
        ws.send("close-please")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


def test_websocket_token_in_query_for_browsers(gateway, platform):
    token = platform.tokens.mint("browser-user", ["patient"])
    with connect(_ws_url(gateway, f"/api/v1/patients/ws?room=7&access_token={token}"),
                 open_timeout=5) as ws:
        hello = json.loads(ws.recv(timeout=5))
    assert hello["authorization"] == f"Bearer {token}"
    assert hello["x-user-id"] == "browser-user"
    assert hello["query"] == "room=7"  # the token is not passed on in the URL


def test_websocket_without_token_is_refused_with_401(gateway):
    with pytest.raises(InvalidStatus) as refused:
        connect(_ws_url(gateway, "/api/v1/patients/ws"), open_timeout=5)
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["status"] == 401


def test_websocket_refused_by_the_service_passes_its_status(gateway, platform):
    token = platform.tokens.mint(roles=["patient"])
    with pytest.raises(InvalidStatus) as refused:
        connect(_ws_url(gateway, "/api/v1/patients/no-such-socket"), open_timeout=5,
                additional_headers={"Authorization": f"Bearer {token}"})
    assert refused.value.response.status_code == 403  # Starlette's answer for no route


def test_a_websocket_session_closes_when_its_token_is_revoked(platform, start_gateway):
    """The gateway hears of the revocation at its next poll of auth's snapshot (here every
    0.2 s) and closes the open session with 1008 at once, not at the next re-check."""
    from fastapi import FastAPI

    from .conftest import ServerThread

    revoked: dict[str, list[dict[str, object]]] = {"sessions": [], "users": [], "keys": []}
    snapshots = FastAPI()

    @snapshots.get("/internal/revocations")
    async def snapshot() -> dict[str, object]:
        return {**revoked, "as_of": time.time()}

    auth_snapshots = ServerThread(snapshots).start()
    try:
        gateway = start_gateway(revocations_url=auth_snapshots.url + "/internal/revocations",
                                revocation_sync_interval=0.2, stream_recheck_interval=60)
        token = platform.tokens.mint("ws-revoked", ["patient"], sid="ws-session")
        with connect(_ws_url(gateway, "/api/v1/patients/ws"),
                     additional_headers={"Authorization": f"Bearer {token}"},
                     open_timeout=5) as ws:
            json.loads(ws.recv(timeout=5))
            ws.send("hi")
            assert ws.recv(timeout=5) == "echo:hi"
            revoked["sessions"].append({"id": "ws-session", "until": time.time() + 600})
            began = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            assert "session" in closed.value.rcvd.reason
            assert time.monotonic() - began < 3
        refused = httpx.get(gateway.url + "/api/v1/patients/echo",
                            headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401
    finally:
        auth_snapshots.stop()
