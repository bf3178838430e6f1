"""Production: auth needs its own ``INTERNAL_SERVICE_KEY`` (it checks every ``/internal``
caller's token with it); a caller's token alone does not do for auth."""

from __future__ import annotations

import pytest

from healthflow.auth.settings import Settings
from healthflow.common.keywrap import new_kek
from healthflow.common.settings import ConfigurationError, load_settings
from healthflow.devkit.testing import PRODUCTION_ENV


def test_production_auth_needs_the_internal_service_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KEY_ENCRYPTION_KEYS", f"prod:{new_kek()}")
    monkeypatch.setenv("AUTH_ACCOUNT_LINK_SECRET", "not-the-default-link-secret")
    monkeypatch.delenv("INTERNAL_SERVICE_KEY")
    monkeypatch.setenv("AUTH_INTERNAL_TOKEN", "a-token-is-not-the-key")
    with pytest.raises(ConfigurationError, match="AUTH_INTERNAL_SERVICE_KEY"):
        load_settings(Settings)
    monkeypatch.setenv("AUTH_INTERNAL_SERVICE_KEY", "the-platforms-key")
    assert load_settings(Settings).healthflow_env == "production"
