"""HEALTHFLOW_ENV=production refuses the notification service's built-in secrets and its
development stand-ins (the local mailbox's SMTP server and Twilio endpoint)."""

from __future__ import annotations

import pytest

from healthflow.common.settings import ConfigurationError, load_settings
from healthflow.devkit.testing import PRODUCTION_ENV
from healthflow.notification.settings import Settings

PRODUCTION = PRODUCTION_ENV


def test_production_refuses_the_notification_stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as refused:
        load_settings(Settings)
    message = str(refused.value)
    for variable in ("NOTIFICATION_TWILIO_AUTH_TOKEN: is the built-in default secret",
                     "NOTIFICATION_EMAIL_VERIFICATION_SECRET: is the built-in default secret",
                     "NOTIFICATION_SMTP_HOST", "NOTIFICATION_TWILIO_BASE_URL",
                     "NOTIFICATION_KEY_ENCRYPTION_KEYS: production needs a key-encryption"):
        assert variable in message, message
    assert "MONGODB_URL" not in message
