"""The secrets of ``docker-compose.yml``: which container gets which, and their files.

Compose passes every secret as a Compose ``secrets:`` file mounted under ``/run/secrets``
(never an ``environment:`` value, which ``docker inspect``, ``/proc/<pid>/environ`` and
every child process see); the apps read ``<VARIABLE>_FILE``
(:class:`healthflow.common.settings.FileVariablesSource`), the infrastructure images
their own way (MinIO's ``MINIO_ROOT_*_FILE``, a RabbitMQ ``conf.d`` file, a coturn
configuration file, ``_FILE`` variables in Janus's entrypoint and in
``deploy/rabbitmq/users.sh``).

:func:`app_secrets` is what :mod:`healthflow.devkit.scaffold` writes into the compose
file; :func:`ensure` (``make compose-secrets``) writes the files into
``deploy/compose/secrets/`` (ignored by git), each once: an existing file is kept, so
the broker's users, MinIO and the key-encryption key keep theirs across runs. A value
is taken from the environment when its variable is set there (``SEED``: the variables
compose read before secrets, and the externally issued keys: Stripe, Twilio, SMTP),
otherwise generated; an external key nobody gave stays an empty file, which the apps
read as unset (the development default applies; production refuses it).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

SECRETS_DIR = "deploy/compose/secrets"
RUN = "/run/secrets"

PLATFORM: dict[str, str] = {
    "MONGODB_URL": "mongodb_url",
    "S3_ACCESS_KEY": "s3_access_key",
    "S3_SECRET_KEY": "s3_secret_key",
}
"""Every service's secrets (not the gateway's, which has no database nor bucket):
unprefixed variable → secret (``<VARIABLE>_FILE``)."""

INTERNAL_KEY = "internal_service_key"
"""Auth's key for the ``/internal`` callers' tokens (``INTERNAL_SERVICE_KEY``); every
other app gets only its own token, :func:`internal_token_secret`, derived from it
(:mod:`healthflow.common.servicecredentials`)."""

KEK = ("KEY_ENCRYPTION_KEYS", "key_encryption_keys")
KEK_SERVICES = frozenset({"auth", "notification", "prescription", "audit"})
"""The services storing wrapped private keys (Kubernetes' ``KEK_SERVICES``, and audit,
whose checkpoint key compose lets it generate and keep)."""

OWN: dict[str, dict[str, str]] = {
    "auth": {"ACCOUNT_LINK_SECRET": "account_link_secret"},
    "notification": {"ACCOUNT_LINK_SECRET": "account_link_secret",
                     "EMAIL_VERIFICATION_SECRET": "email_verification_secret",
                     "TWILIO_AUTH_TOKEN": "twilio_auth_token",
                     "SMTP_PASSWORD": "smtp_password"},
    "payment": {"STRIPE_API_KEY": "stripe_api_key",
                "STRIPE_WEBHOOK_SECRET": "stripe_webhook_secret"},
    "teleconference": {"JANUS_API_SECRET": "janus_api_secret",
                       "JANUS_ADMIN_SECRET": "janus_admin_secret",
                       "JANUS_ROOM_ADMIN_KEY": "janus_room_admin_key",
                       "TURN_SECRET": "turn_secret"},
    "gateway": {"METRICS_TOKEN": "gateway_metrics_token"},
}
"""A component's own secrets: variable after its prefix → secret (``AUTH_…_FILE``)."""

EXTERNAL = frozenset({"twilio_auth_token", "smtp_password", "stripe_api_key",
                      "stripe_webhook_secret"})
"""Issued by someone else: never generated (an empty file when not given)."""

SEED: dict[str, str] = {
    "mongodb_url": "MONGODB_URL", "s3_access_key": "MINIO_ROOT_USER",
    "s3_secret_key": "MINIO_ROOT_PASSWORD", "key_encryption_keys": "KEY_ENCRYPTION_KEYS",
    "janus_api_secret": "JANUS_API_SECRET", "janus_admin_secret": "JANUS_ADMIN_SECRET",
    "janus_room_admin_key": "JANUS_ROOM_ADMIN_KEY", "turn_secret": "TURN_SECRET",
    "account_link_secret": "ACCOUNT_LINK_SECRET",
    "email_verification_secret": "EMAIL_VERIFICATION_SECRET",
    "twilio_auth_token": "TWILIO_AUTH_TOKEN", "smtp_password": "SMTP_PASSWORD",
    "stripe_api_key": "STRIPE_API_KEY", "stripe_webhook_secret": "STRIPE_WEBHOOK_SECRET",
    "gateway_metrics_token": "GATEWAY_METRICS_TOKEN", "rabbitmq_password": "RABBITMQ_PASSWORD",
    INTERNAL_KEY: "INTERNAL_SERVICE_KEY",
}
"""Secret → the environment variable whose value it takes when set (see the module)."""

DEFAULTS = {"mongodb_url": "mongodb://mongo:27017/?replicaSet=rs0",
            "s3_access_key": "healthflow"}
"""Not secret by themselves on a laptop, but where a deployment's credentials go."""


def amqp_url_secret(service: str) -> str:
    return f"amqp_url_{service}"


def bus_password_secret(service: str) -> str:
    return f"rabbitmq_password_{service}"


def internal_token_secret(app: str) -> str:
    return f"internal_token_{app}"


def app_secrets(name: str, prefix: str, services: Sequence[str]) -> dict[str, str]:
    """``{variable: secret}`` of the app ``name`` (a service of ``services`` or
    ``gateway``), whose own variables start with ``prefix`` (``AUTH_``)."""
    variables: dict[str, str] = {}
    if name in services:
        variables.update({f"{variable}_FILE": secret for variable, secret in PLATFORM.items()})
        variables[f"{prefix}AMQP_URL_FILE"] = amqp_url_secret(name)
    if name == "auth":
        variables["INTERNAL_SERVICE_KEY_FILE"] = INTERNAL_KEY
    elif name in services or name == "gateway":
        variables[f"{prefix}INTERNAL_TOKEN_FILE"] = internal_token_secret(name)
    if name in KEK_SERVICES:
        variables[f"{KEK[0]}_FILE"] = KEK[1]
    variables.update({f"{prefix}{variable}_FILE": secret
                      for variable, secret in OWN.get(name, {}).items()})
    return variables


def names(services: Iterable[str]) -> list[str]:
    """Every secret the compose file declares, in its order."""
    services = list(services)
    own = [s for table in OWN.values() for s in table.values()]
    result = list(dict.fromkeys([*PLATFORM.values(), KEK[1], *own, "rabbitmq_admin_conf",
                                 "coturn_conf", INTERNAL_KEY]))
    for service in services:
        result += [amqp_url_secret(service), bus_password_secret(service)]
    result += [internal_token_secret(app) for app in [*services, "gateway"] if app != "auth"]
    return result


def _token() -> str:
    return secrets.token_urlsafe(32)


def _generate(name: str, env: Mapping[str, str]) -> str:
    seed = env.get(SEED.get(name, ""), "")
    if seed:
        return seed
    if name in EXTERNAL:
        return ""
    if name in DEFAULTS:
        return DEFAULTS[name]
    if name == "key_encryption_keys":
        from healthflow.common.keywrap import new_kek

        return f"compose-1:{new_kek()}"
    if name.startswith("rabbitmq_password_"):
        return env.get(f"RABBITMQ_PASSWORD_{name.removeprefix('rabbitmq_password_').upper()}",
                       "") or _token()
    return _token()


def ensure(directory: Path, services: Sequence[str],
           env: Mapping[str, str] | None = None) -> list[str]:
    """Write the secrets' files missing in ``directory`` (mode 0700; files 0644, since
    the containers' users differ from the file's owner and Compose mounts the file as it
    is); the names written. Existing files are kept as they are."""
    env = os.environ if env is None else env
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    written = []

    def value(name: str) -> str:
        path = directory / name
        if path.exists():
            return path.read_text(encoding="utf-8").removesuffix("\n")
        if name == "rabbitmq_admin_conf":
            text = (f"default_user = {env.get('RABBITMQ_USER') or 'healthflow'}\n"
                    f"default_pass = {_generate('rabbitmq_password', env)}")
        elif name == "coturn_conf":
            text = f"static-auth-secret={value('turn_secret')}"
        elif name.startswith("internal_token_"):
            from healthflow.common.servicecredentials import service_token

            text = service_token(value(INTERNAL_KEY), name.removeprefix("internal_token_"))
        elif name.startswith("amqp_url_"):
            service = name.removeprefix("amqp_url_")
            text = (f"amqp://healthflow-{service}:{value(bus_password_secret(service))}"
                    "@rabbitmq:5672/")
        else:
            text = _generate(name, env)
        path.write_text(text + "\n" if text else "", encoding="utf-8")
        path.chmod(0o644)
        written.append(name)
        return text

    for name in names(services):
        value(name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m healthflow.devkit.composesecrets [DIR]`` (``make compose-secrets``)."""
    from healthflow.common.topology import SERVICES

    directory = Path(argv[0] if argv else SECRETS_DIR)
    written = ensure(directory, list(SERVICES))
    print(f"{directory}: {len(written)} secret file(s) written, the others kept")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
