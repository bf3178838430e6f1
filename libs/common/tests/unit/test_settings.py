import pytest
from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ConfigurationError, ServiceSettings, load_settings


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", env_file=None, extra="ignore")
    service_name: str = "demo"


def test_prefixed_variable_wins_over_platform_wide(monkeypatch):
    monkeypatch.setenv("MONGODB_URL", "mongodb://shared:1/")
    monkeypatch.setenv("DEMO_MONGODB_URL", "mongodb://mine:2/")
    assert load_settings(DemoSettings).mongodb_url == "mongodb://mine:2/"


def test_platform_wide_variable_is_the_fallback(monkeypatch):
    monkeypatch.delenv("DEMO_MONGODB_URL", raising=False)
    monkeypatch.setenv("MONGODB_URL", "mongodb://shared:1/")
    settings = load_settings(DemoSettings)
    assert settings.mongodb_url == "mongodb://shared:1/"
    assert settings.database_name == "healthflow_demo"


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("DEMO_PORT=9123\n")

    class DotenvSettings(DemoSettings):
        model_config = SettingsConfigDict(env_prefix="DEMO_", env_file=".env", extra="ignore")

    assert load_settings(DotenvSettings).port == 9123


def test_invalid_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("DEMO_PORT", "not-a-port")
    monkeypatch.setenv("DEMO_TRANSPORT", "carrier-pigeon")
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(DemoSettings)
    message = str(excinfo.value)
    assert "DEMO_PORT" in message
    assert "DEMO_TRANSPORT" in message


def test_a_variable_may_come_from_the_file_its_FILE_variable_names(tmp_path, monkeypatch):
    """Docker/Compose secrets: ``<VARIABLE>_FILE`` (prefixed or platform-wide) names a file
    holding the value; one trailing newline is not part of it."""
    monkeypatch.delenv("DEMO_AMQP_URL", raising=False)
    monkeypatch.delenv("AMQP_URL", raising=False)
    monkeypatch.delenv("S3_SECRET_KEY", raising=False)
    (tmp_path / "amqp").write_text("amqp://demo:s3cret@rabbitmq:5672/\n")
    (tmp_path / "s3").write_text("minio-secret")
    (tmp_path / "delays").write_text("[0.5, 2]\n")
    monkeypatch.setenv("DEMO_AMQP_URL_FILE", str(tmp_path / "amqp"))
    monkeypatch.setenv("S3_SECRET_KEY_FILE", str(tmp_path / "s3"))  # platform-wide
    monkeypatch.setenv("DEMO_RETRY_DELAYS_FILE", str(tmp_path / "delays"))  # JSON, as env
    settings = load_settings(DemoSettings)
    assert settings.amqp_url == "amqp://demo:s3cret@rabbitmq:5672/"
    assert settings.s3_secret_key.get_secret_value() == "minio-secret"
    assert settings.retry_delays == [0.5, 2.0]


def test_file_variables_keep_the_prefixed_over_platform_wide_order(tmp_path, monkeypatch):
    (tmp_path / "shared").write_text("amqp://shared@rabbitmq/")
    (tmp_path / "mine").write_text("amqp://mine@rabbitmq/")
    monkeypatch.setenv("AMQP_URL_FILE", str(tmp_path / "shared"))
    monkeypatch.setenv("DEMO_AMQP_URL", "amqp://direct@rabbitmq/")
    assert load_settings(DemoSettings).amqp_url == "amqp://direct@rabbitmq/"
    monkeypatch.delenv("DEMO_AMQP_URL")
    monkeypatch.setenv("DEMO_AMQP_URL_FILE", str(tmp_path / "mine"))
    assert load_settings(DemoSettings).amqp_url == "amqp://mine@rabbitmq/"
    (tmp_path / "mine").write_text("\n")  # empty: an optional secret left out
    assert load_settings(DemoSettings).amqp_url == "amqp://shared@rabbitmq/"


def test_a_file_variable_that_cannot_be_used_names_itself_not_the_value(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_S3_SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match=r"DEMO_S3_SECRET_KEY_FILE: cannot read .*missing"):
        load_settings(DemoSettings)
    (tmp_path / "key").write_text("from-the-file")
    monkeypatch.setenv("DEMO_S3_SECRET_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("DEMO_S3_SECRET_KEY", "from-the-environment")
    with pytest.raises(ConfigurationError, match="DEMO_S3_SECRET_KEY and DEMO_S3_SECRET_KEY_FILE"
                       ) as excinfo:
        load_settings(DemoSettings)
    assert "from-the" not in str(excinfo.value)
    monkeypatch.delenv("DEMO_S3_SECRET_KEY")
    (tmp_path / "delays").write_text("not json")
    monkeypatch.setenv("DEMO_RETRY_DELAYS_FILE", str(tmp_path / "delays"))
    with pytest.raises(ConfigurationError, match=r"DEMO_RETRY_DELAYS_FILE: .* does not hold JSON"):
        load_settings(DemoSettings)


def test_production_refuses_a_default_secret_read_from_a_file(tmp_path, monkeypatch):
    (tmp_path / "s3").write_text("healthflow-minio\n")  # the built-in default
    monkeypatch.setenv("DEMO_S3_SECRET_KEY_FILE", str(tmp_path / "s3"))
    monkeypatch.setenv("HEALTHFLOW_ENV", "production")
    with pytest.raises(ConfigurationError, match="DEMO_S3_SECRET_KEY: is the built-in default"):
        load_settings(DemoSettings)
