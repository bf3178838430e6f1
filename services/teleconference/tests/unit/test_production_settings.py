"""HEALTHFLOW_ENV=production refuses a Janus without secrets and TURN servers without
their shared secret."""

from __future__ import annotations

import pytest

from healthflow.common.settings import ConfigurationError, load_settings
from healthflow.devkit.testing import PRODUCTION_ENV
from healthflow.teleconference.settings import Settings

PRODUCTION = PRODUCTION_ENV | {
    "TELECONFERENCE_JANUS_URL": "http://janus.internal:8088/janus",
    "TELECONFERENCE_ICE_SERVERS": '["turn:turn.example.org:3478"]',
}
SECRETS = ("JANUS_API_SECRET", "JANUS_ADMIN_SECRET", "JANUS_ROOM_ADMIN_KEY")


def test_production_refuses_janus_without_secrets_and_turn_without_its_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as refused:
        load_settings(Settings)
    message = str(refused.value)
    for name in SECRETS:
        assert f"TELECONFERENCE_{name}: is not set" in message, message
    assert "TELECONFERENCE_TURN_SECRET: is not set" in message, message
    for name in SECRETS:
        monkeypatch.setenv(f"TELECONFERENCE_{name}", f"{name.lower()}-in-production")
    monkeypatch.setenv("TELECONFERENCE_TURN_SECRET", "coturn-static-auth-secret")
    settings = load_settings(Settings)
    assert settings.ice_servers == ["turn:turn.example.org:3478"]


def test_development_runs_with_the_runners_janus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELECONFERENCE_JANUS_URL", "http://127.0.0.1:8088/janus")
    assert load_settings(Settings).janus_api_secret.get_secret_value() == ""
