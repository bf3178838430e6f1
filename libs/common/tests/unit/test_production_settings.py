"""HEALTHFLOW_ENV=production refuses built-in default secrets, development stand-ins and
store URLs without credentials, naming each variable (issue 17)."""

from __future__ import annotations

import pytest

from healthflow.common.settings import ConfigurationError, ServiceSettings, load_settings

PRODUCTION = {
    "HEALTHFLOW_ENV": "production",
    "MONGODB_URL": "mongodb://svc:s3cret@mongo.internal:27017/?replicaSet=rs0",
    "AMQP_URL": "amqp://svc:s3cret@rabbitmq.internal:5672/",
    "S3_ENDPOINT_URL": "https://s3.internal",
    "S3_ACCESS_KEY": "svc",
    "S3_SECRET_KEY": "not-the-default",
    "INTERNAL_SERVICE_KEY": "not-the-default-internal-key",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*PRODUCTION, "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_development_accepts_the_defaults(env: pytest.MonkeyPatch) -> None:
    assert load_settings(ServiceSettings).healthflow_env == "development"


def test_production_names_every_default_secret_stand_in_and_bare_url(
        env: pytest.MonkeyPatch) -> None:
    env.setenv("HEALTHFLOW_ENV", "production")
    with pytest.raises(ConfigurationError) as refused:
        load_settings(ServiceSettings)
    message = str(refused.value)
    for variable in ("S3_SECRET_KEY: is the built-in default secret",
                     "INTERNAL_TOKEN (or INTERNAL_SERVICE_KEY): unset",
                     "MONGODB_URL: is the development stand-in", "MONGODB_URL: has no credentials",
                     "AMQP_URL: is the development stand-in", "S3_ENDPOINT_URL"):
        assert variable in message, message
    assert "healthflow-minio" not in message  # a secret is named, never shown


def test_production_accepts_a_complete_configuration(env: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION.items():
        env.setenv(name, value)
    assert load_settings(ServiceSettings).healthflow_env == "production"
    env.setenv("AMQP_URL", "amqp://guest:guest@rabbitmq.internal:5672/")
    env.setenv("MONGODB_URL", "mongodb://mongo.internal:27017/")
    with pytest.raises(ConfigurationError, match="AMQP_URL: uses no or RabbitMQ's guest") as r:
        load_settings(ServiceSettings)
    assert "MONGODB_URL: has no credentials" in str(r.value)
