"""HEALTHFLOW_ENV=production refuses the payment service's stand-ins: the localstripe key,
no webhook signing secret, and a Stripe API base on a local server."""

from __future__ import annotations

import pytest

from healthflow.common.settings import ConfigurationError, load_settings
from healthflow.devkit.testing import PRODUCTION_ENV
from healthflow.payment.settings import Settings

PRODUCTION = PRODUCTION_ENV | {
    "PAYMENT_STRIPE_API_KEY": "sk_live_not_the_default",
}


def test_production_refuses_a_missing_webhook_secret_and_a_local_stripe(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    for base in ("http://127.0.0.1:8420", "http://localhost:8420", "http://[::1]:8420",
                 "http://localstripe:8420", "http://0.0.0.0:8420"):
        monkeypatch.setenv("PAYMENT_STRIPE_API_BASE", base)
        with pytest.raises(ConfigurationError) as refused:
            load_settings(Settings)
        message = str(refused.value)
        assert "PAYMENT_STRIPE_WEBHOOK_SECRET: is not set" in message, message
        assert "PAYMENT_STRIPE_API_BASE: points at a local server" in message, message
        assert "MONGODB_URL" not in message
    monkeypatch.delenv("PAYMENT_STRIPE_API_BASE")
    monkeypatch.setenv("PAYMENT_STRIPE_WEBHOOK_SECRET", "whsec_production")
    settings = load_settings(Settings)  # Stripe itself, a secret: accepted
    assert settings.stripe_api_base is None


def test_development_still_runs_on_localstripe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENT_STRIPE_API_BASE", "http://127.0.0.1:8420")
    assert load_settings(Settings).stripe_webhook_secret is None
