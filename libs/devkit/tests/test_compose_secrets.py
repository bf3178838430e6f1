"""``make compose-secrets`` (:mod:`healthflow.devkit.composesecrets`) and the consumers of
its files outside Python: ``deploy/rabbitmq/users.sh`` reading ``*_FILE``."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from healthflow.common.keywrap import parse_keks
from healthflow.common.servicecredentials import service_token
from healthflow.common.settings import ServiceSettings, load_settings
from healthflow.devkit import busaccess, composesecrets

SERVICES = ["auth", "notification", "payment", "teleconference"]


def test_the_platforms_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    written = composesecrets.ensure(directory, SERVICES, env={})
    assert sorted(written) == sorted(composesecrets.names(SERVICES))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = {p.name: p.read_text() for p in directory.iterdir()}
    assert len({files["s3_secret_key"], files["turn_secret"], files["janus_api_secret"],
                files["rabbitmq_password_auth"], files["rabbitmq_password_payment"]}) == 5
    assert len(files["account_link_secret"].strip()) >= 40  # 32 random bytes, base64url
    keks, current = parse_keks(files["key_encryption_keys"].strip(), "KEY_ENCRYPTION_KEYS")
    assert current == "compose-1" and len(keks[current]) == 32
    amqp = urlsplit(files["amqp_url_payment"].strip())
    assert (amqp.username, amqp.password, amqp.hostname) == (
        "healthflow-payment", files["rabbitmq_password_payment"].strip(), "rabbitmq")
    assert files["coturn_conf"].strip() == "static-auth-secret=" + files["turn_secret"].strip()
    assert files["stripe_api_key"] == "" and files["twilio_auth_token"] == ""  # not ours
    key = files["internal_service_key"].strip()  # auth's; each other app its own token
    assert len(key) >= 40 and "internal_token_auth" not in files
    assert files["internal_token_payment"].strip() == service_token(key, "payment")
    assert files["internal_token_gateway"].strip() == service_token(key, "gateway")
    (directory / "turn_secret").write_text("kept\n")
    (directory / "coturn_conf").unlink()
    assert composesecrets.ensure(directory, SERVICES, env={}) == ["coturn_conf"]
    assert (directory / "turn_secret").read_text() == "kept\n"
    assert (directory / "coturn_conf").read_text() == "static-auth-secret=kept\n"


def test_values_a_deployment_already_had_or_was_issued_are_taken_from_the_environment(
        tmp_path: Path) -> None:
    env = {"KEY_ENCRYPTION_KEYS": "old:" + "A" * 43, "STRIPE_API_KEY": "sk_live_x",
           "RABBITMQ_PASSWORD_AUTH": "auth-pw", "MINIO_ROOT_PASSWORD": "minio-pw"}
    composesecrets.ensure(tmp_path, SERVICES, env=env)
    assert (tmp_path / "key_encryption_keys").read_text() == env["KEY_ENCRYPTION_KEYS"] + "\n"
    assert (tmp_path / "stripe_api_key").read_text() == "sk_live_x\n"
    assert (tmp_path / "s3_secret_key").read_text() == "minio-pw\n"
    assert (tmp_path / "amqp_url_auth").read_text().startswith("amqp://healthflow-auth:auth-pw@")


def test_a_service_reads_its_compose_secrets_and_an_empty_one_as_unset(
        tmp_path: Path, monkeypatch) -> None:
    """The generated files through the settings loader, as a container reads them."""
    composesecrets.ensure(tmp_path, SERVICES, env={})

    class Demo(ServiceSettings):
        model_config = {**ServiceSettings.model_config, "env_prefix": "PAYMENT_",
                        "env_file": None}
        stripe_api_key: str = "sk_test_localstripe"

    for variable, secret in composesecrets.app_secrets("payment", "PAYMENT_", SERVICES).items():
        monkeypatch.setenv(variable, str(tmp_path / secret))
    settings = load_settings(Demo)
    assert settings.amqp_url == (tmp_path / "amqp_url_payment").read_text().strip()
    assert settings.s3_secret_key.get_secret_value() == (
        tmp_path / "s3_secret_key").read_text().strip()
    assert settings.stripe_api_key == "sk_test_localstripe"  # empty file: the default


def test_the_bus_users_script_reads_passwords_from_files_or_the_environment(
        tmp_path: Path) -> None:
    """``users.sh`` with a stand-in ``rabbitmqctl`` that records its arguments."""
    access = {n: busaccess.service_access(n, [f"{n}.x"], ["#"]) for n in ("auth", "payment")}
    script = tmp_path / "users.sh"
    script.write_text(busaccess.init_script(access))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ctl = bin_dir / "rabbitmqctl"
    ctl.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\n')
    ctl.chmod(0o755)
    (tmp_path / "auth-pw").write_text("from-the-file\n")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}",
           "RABBITMQ_PASSWORD_AUTH_FILE": str(tmp_path / "auth-pw"),
           "RABBITMQ_PASSWORD_PAYMENT": "from-the-environment"}
    subprocess.run(["sh", str(script)], env=env, check=True, timeout=30)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert "-q add_user healthflow-auth from-the-file" in calls
    assert "-q add_user healthflow-payment from-the-environment" in calls
    del env["RABBITMQ_PASSWORD_PAYMENT"]
    failed = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                            timeout=30)
    assert failed.returncode != 0
    assert "RABBITMQ_PASSWORD_PAYMENT or RABBITMQ_PASSWORD_PAYMENT_FILE" in failed.stderr
