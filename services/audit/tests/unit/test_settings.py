"""The audit service's settings."""

from __future__ import annotations

import pytest

from healthflow.audit.settings import Settings
from healthflow.common.settings import ConfigurationError, load_settings


def test_defaults() -> None:
    settings = Settings()
    assert (settings.service_name, settings.port) == ("audit", 8102)
    assert settings.database_name == "healthflow_audit"
    assert settings.append_batch_max == 64


def test_prefixed_variables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("AUDIT_PORT", "9102")
    monkeypatch.setenv("AUDIT_APPEND_BATCH_MAX", "8")
    settings = load_settings(Settings)
    assert (settings.port, settings.append_batch_max) == (9102, 8)


def test_invalid_batch_size_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_APPEND_BATCH_MAX", "0")
    with pytest.raises(ConfigurationError, match="AUDIT_APPEND_BATCH_MAX"):
        load_settings(Settings)
