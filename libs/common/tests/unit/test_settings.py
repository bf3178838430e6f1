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
