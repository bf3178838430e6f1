"""The first admin (CLI and the platform runner's hook) and key rotation from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from healthflow.auth import cli
from healthflow.auth.app import create_app
from healthflow.auth.store import SIGNING_KEYS, USERS
from healthflow.devkit.testing import eventually, running_app

SECRET = "Velvet-Orbit-Meadow-9128"


@pytest.fixture
def cli_env(monkeypatch, settings) -> dict[str, str]:
    """The service's environment variables for ``settings``' database (what an operator sets)."""
    env = {
        "AUTH_MONGODB_URL": settings.mongodb_url,
        "AUTH_MONGODB_DATABASE": settings.database_name,
        "AUTH_TRANSPORT": "inprocess",
        "AUTH_ARGON2_TIME_COST": "1",
        "AUTH_ARGON2_MEMORY_COST": "1024",
        "AUTH_ARGON2_PARALLELISM": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


async def test_ensure_first_admin_is_idempotent(settings, capsys, outbox) -> None:
    email = f"Root.{uuid.uuid4().hex[:6]}@Example.org"
    # Called from inside a running event loop: it works on a thread of its own.
    first = cli.ensure_first_admin(settings, email, SECRET, source="HEALTHFLOW_ADMIN_PASSWORD")
    out = capsys.readouterr().out
    assert "created" in out and "HEALTHFLOW_ADMIN_PASSWORD" in out and SECRET not in out
    again = cli.ensure_first_admin(settings, email.lower(), "Another-Secret-Phrase-77")
    out = capsys.readouterr().out
    assert again == first and "already exists" in out and "an admin" in out

    app = create_app(settings)
    async with running_app(app) as http:
        users = await app.state.runtime.db[USERS].find({}).to_list()
        assert len(users) == 1 and users[0]["roles"] == ["admin"]
        token = await http.post("/api/v1/auth/token",
                                data={"username": email, "password": SECRET})
        assert token.status_code == 200
        events = await outbox(app.state.runtime.db,
                              {"type": "user.registered", "envelope.subject": first})
        assert len(events) == 1


async def test_ensure_first_admin_refuses_a_weak_password(settings) -> None:
    with pytest.raises(ValueError, match="at least 12"):
        await cli.ensure_first_admin_async(settings, "boss@example.org", "admin")


def test_create_admin_command(cli_env, capsys, monkeypatch) -> None:
    email = f"ops.{uuid.uuid4().hex[:6]}@example.org"
    monkeypatch.setenv("HEALTHFLOW_ADMIN_PASSWORD", SECRET)
    assert cli.main(["create-admin", "--email", email]) == 0
    out = capsys.readouterr().out
    assert "the environment variable HEALTHFLOW_ADMIN_PASSWORD" in out and SECRET not in out
    assert cli.main(["create-admin", "--email", email]) == 0
    assert "already exists" in capsys.readouterr().out

    monkeypatch.setenv("HEALTHFLOW_ADMIN_PASSWORD", "password")
    assert cli.main(["create-admin", "--email", f"x{email}"]) == 2
    assert "refused" in capsys.readouterr().err


def test_create_admin_without_a_password_source_fails_clearly(cli_env, monkeypatch) -> None:
    """As a process with no terminal and no HEALTHFLOW_ADMIN_PASSWORD: exit 2, a clear message."""
    env = {k: v for k, v in os.environ.items() if k != "HEALTHFLOW_ADMIN_PASSWORD"}
    result = subprocess.run(
        [sys.executable, "-m", "healthflow.auth", "create-admin", "--email", "a@example.org"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "HEALTHFLOW_ADMIN_PASSWORD" in result.stderr


async def test_rotate_keys_command_and_a_running_replica(settings) -> None:
    app = create_app(settings)
    async with running_app(app) as http:
        before = app.state.keys.signing_kid
        rotation = await cli.rotate_keys(settings)
        assert rotation.retired_kid == before
        await app.state.keys.reload()  # what the periodic reload does
        assert app.state.keys.signing_kid == rotation.activated_kid
        kids = {k["kid"] for k in (await http.get("/.well-known/jwks.json")).json()["keys"]}
        assert {before, rotation.activated_kid, rotation.next_kid} <= kids
        states = {d["_id"]: d["state"]
                  for d in await app.state.runtime.db[SIGNING_KEYS].find({}).to_list()}
        assert list(states.values()).count("active") == 1


async def test_replicas_pick_up_a_rotation_by_themselves(settings_factory, unique_name) -> None:
    """The periodic reload: a rotation made elsewhere (the CLI) reaches a running replica."""
    settings = settings_factory(f"auth_{unique_name}", key_refresh_interval=0.2,
                                key_retire_grace=1)
    app = create_app(settings)
    async with running_app(app):
        rotation = await cli.rotate_keys(settings)

        async def switched() -> bool:
            return bool(app.state.keys.signing_kid == rotation.activated_kid)

        await eventually(switched, within=10)
        kids = {k["kid"] for k in app.state.keys.jwks()["keys"]}
        assert rotation.retired_kid in kids and rotation.next_kid in kids
