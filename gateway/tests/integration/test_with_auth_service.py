"""Through the gateway against the real auth service (a child process on the session's
MongoDB-protocol server): register, log in, call a protected route, refresh, log out;
the edge trusts the service's own JWKS and refuses a tampered token."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest

from healthflow.devkit.embedded import free_port

from .conftest import REPO, wait_until

PASSWORD = "Quiet-Harbour-Lantern-73"


@pytest.fixture
def auth_service(mongodb_url, unique_name):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "GATEWAY_"))}
    env |= {
        "AUTH_PORT": str(port), "AUTH_HOST": "127.0.0.1", "AUTH_MONGODB_URL": mongodb_url,
        "AUTH_MONGODB_DATABASE": f"auth_{unique_name}", "AUTH_TRANSPORT": "inprocess",
        "AUTH_LOG_LEVEL": "WARNING", "AUTH_ARGON2_TIME_COST": "1",
        "AUTH_ARGON2_MEMORY_COST": "1024", "AUTH_ARGON2_PARALLELISM": "1",
    }
    env.pop("REDIS_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "healthflow.auth"], env=env, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, "the auth service exited"
        try:
            return httpx.get(url + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=60, interval=0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def test_account_lifecycle_through_the_gateway(start_gateway, platform, auth_service):
    upstreams = platform.upstreams() | {"auth": auth_service}
    gateway = start_gateway(upstreams=upstreams)
    api = httpx.Client(base_url=gateway.url, timeout=10)
    email = f"pat.{uuid.uuid4().hex[:8]}@example.org"

    registered = api.post("/api/v1/auth/register", json={
        "email": email, "password": PASSWORD, "full_name": "Pat Example",
        "phone": "+44 7911 123456"})
    assert registered.status_code == 201, registered.text
    login = api.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    tokens = login.json()
    assert {"access_token", "refresh_token", "token_type", "expires_in"} <= set(tokens)
    assert "ratelimit" in login.headers
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}

    me = api.get("/api/v1/auth/me", headers=bearer)
    assert me.status_code == 200, me.text
    assert me.json()["email"] == email

    # the same token with its role claim changed is refused at the edge
    header, payload, signature = tokens["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    tampered = {"Authorization": f"Bearer {header}.{forged}.{signature}"}
    assert api.get("/api/v1/users", headers=tampered).status_code == 401
    # a patient's genuine token reaches the service, which refuses an admin route
    assert api.get("/api/v1/users", headers=bearer).status_code == 403

    refreshed = api.post("/api/v1/auth/refresh",
                         json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    new_bearer = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert api.post("/api/v1/auth/logout", headers=new_bearer).status_code == 204
    # the rotated-away refresh token is now refused by the service
    replay = api.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert replay.status_code in (400, 401)

    doc = api.get("/openapi.json").json()
    assert "/api/v1/auth/token" in doc["paths"] and "/api/v1/patients/things" in doc["paths"]
    assert "/.well-known/jwks.json" in doc["paths"]
    dangling = [ref for ref in _refs(doc) if not _resolves(doc, ref)]
    assert not dangling, dangling


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def _resolves(doc: dict, ref: str) -> bool:
    node: object = doc
    for part in ref.removeprefix("#/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
