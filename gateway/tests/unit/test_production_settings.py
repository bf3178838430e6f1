"""HEALTHFLOW_ENV=production at the gateway: no database, broker or object store to ask
for; a wildcard CORS origin is refused in every environment."""

from __future__ import annotations

import pytest

from healthflow.common.settings import ConfigurationError, load_settings
from healthflow.gateway.settings import GatewaySettings


def test_the_gateway_needs_no_database_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MONGODB_URL", "AMQP_URL", "S3_SECRET_KEY", "S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HEALTHFLOW_ENV", "production")
    with pytest.raises(ConfigurationError, match=r"GATEWAY_INTERNAL_TOKEN \(or INTERNAL_"):
        load_settings(GatewaySettings)  # it reads auth's revocation snapshot as itself
    monkeypatch.setenv("GATEWAY_INTERNAL_TOKEN", "the-gateways-own-token")
    assert load_settings(GatewaySettings).healthflow_env == "production"
