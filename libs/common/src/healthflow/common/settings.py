"""Service settings from the environment (and an optional ``.env`` file).

Every service has a ``Settings`` subclass of :class:`ServiceSettings` whose
``model_config`` sets ``env_prefix`` (``AUDIT_``, ``AUTH_``, …). A field is read
from the prefixed variable first (``AUDIT_MONGODB_URL``) and then from the
platform-wide unprefixed one (``MONGODB_URL``), so one ``.env`` can configure a
whole local platform while each deployment can still override one service.

:func:`load_settings` turns pydantic's validation error into
:class:`ConfigurationError`, whose message names the environment variable to fix.

``HEALTHFLOW_ENV=production`` is the production switch: :func:`load_settings` then
also refuses (:func:`production_problems`) every secret still at its built-in
default, every setting still pointing at a development stand-in (the embedded
database, s3rver, the local mailbox; a class lists them in ``stand_in_fields``),
a MongoDB URL without credentials and RabbitMQ's ``guest`` account.

Any field may instead come from a file: ``<VARIABLE>_FILE`` names a file whose content
(one trailing newline dropped) is the value, as a Docker or Compose secret mounted under
``/run/secrets`` is read (:class:`FileVariablesSource`). ``AUTH_ACCOUNT_LINK_SECRET_FILE``
stands for ``AUTH_ACCOUNT_LINK_SECRET`` and ``AMQP_URL_FILE`` for ``AMQP_URL``, with the
same precedence; setting a variable and its ``_FILE`` both is an error, an empty file
counts as unset (an optional secret left out), an unreadable one is an error naming the
variable and the path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

S = TypeVar("S", bound="ServiceSettings")


class ConfigurationError(RuntimeError):
    """A setting is missing or invalid; the message names the variable."""


DEVELOPMENT_INTERNAL_KEY = "embedded-internal-service-key"
"""The built-in ``INTERNAL_SERVICE_KEY`` (healthflow.common.servicecredentials): for
development and tests only; production refuses it like every default secret."""


class ServiceSettings(BaseSettings):
    """Settings every service shares.

    Durations are in seconds (floats), sizes in bytes.
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_prefix=""
    )

    # Fields whose built-in default is a development stand-in on this machine: production
    # must set each (HEALTHFLOW_ENV=production, see production_problems).
    stand_in_fields: ClassVar[tuple[str, ...]] = ("mongodb_url", "amqp_url", "s3_endpoint_url")
    # Fields this component never uses (the gateway has no database): not checked.
    unused_fields: ClassVar[frozenset[str]] = frozenset()

    healthflow_env: Literal["development", "production"] = "development"
    service_name: str = "service"
    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=1, le=65535)
    mongodb_url: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    mongodb_database: str | None = None  # default: healthflow_<service>
    transport: Literal["rabbitmq", "inprocess"] = "rabbitmq"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # The platform declared the exchanges, queues and direct bindings (a service's own
    # RabbitMQ user may not, healthflow.devkit.busaccess): the transport only checks them.
    amqp_platform_topology: bool = False
    # Consumer behaviour
    prefetch: int = Field(default=32, ge=1, le=10_000)
    retry_delays: list[float] = Field(default_factory=lambda: [1.0, 5.0, 30.0])
    # Outbox relay
    outbox_batch_size: int = Field(default=100, ge=1, le=5_000)
    outbox_poll_interval: float = Field(default=1.0, gt=0)
    outbox_lease: float = Field(default=30.0, gt=0)
    outbox_retention: float = Field(default=7 * 24 * 3600.0, ge=0)
    outbox_max_backoff: float = Field(default=60.0, gt=0)
    # Readiness: outbox lag (age of the oldest pending record) above this is not ready.
    readiness_max_outbox_lag: float = Field(default=300.0, gt=0)
    # Auth (token verification against the auth service's JWKS)
    jwks_url: str = "http://127.0.0.1:8101/.well-known/jwks.json"
    jwt_issuer: str = "healthflow-auth"
    jwt_audience: str = "healthflow"
    jwks_cache_seconds: float = Field(default=300.0, gt=0)
    # Longest access-token lifetime (exp - iat, seconds) any verifier accepts; revocation
    # entries are kept this long (healthflow.common.revocation).
    token_max_lifetime: int = Field(default=3600, ge=60, le=24 * 3600)
    # The auth service's revocation snapshot (default: the JWKS URL's origin +
    # /internal/revocations), read at start and every revocation_sync_interval seconds.
    revocations_url: str | None = None
    revocation_sync_interval: float = Field(default=60.0, gt=0)
    # The auth service's person keys (healthflow.common.personaldata; default: the JWKS
    # URL's origin + /internal/person-keys), read by consumers of sealed personal values.
    person_keys_url: str | None = None
    # The /internal routes' credentials (healthflow.common.servicecredentials): the key
    # auth checks callers with (auth only, in a deployment; unset = the built-in
    # development key, refused in production), and this service's own token, derived
    # from that key for its name (a deployment gives each caller only its own).
    internal_service_key: SecretStr | None = None
    internal_token: SecretStr | None = None
    # HTTP
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    # The gateway's public address (scheme, host, port; ``<SERVICE>_PUBLIC_BASE_URL`` or the
    # platform-wide ``PUBLIC_BASE_URL``): absolute links a service hands out (a printed
    # prescription's QR code, a FHIR Bundle's fullUrls). Never taken from the request:
    # ``Host``/``X-Forwarded-Host`` are the client's to choose.
    public_base_url: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"
    # Tracing (healthflow.common.tracing): OTEL_EXPORTER none | console | otlp (OTLP/HTTP,
    # OTEL_EXPORTER_OTLP_* variables); TRACES_FILE also appends every span as a line of
    # JSON to that path, {service} and {pid} replaced (tests, local debugging).
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    traces_file: str | None = None
    # Object storage (S3 API: MinIO in compose, s3rver under `make run`; healthflow.common.blobs).
    # The scheme of the endpoint is the secure flag: https → TLS.
    s3_endpoint_url: str = "http://127.0.0.1:9000"
    # Where clients fetch presigned URLs, when it differs (compose: minio:9000 is internal).
    s3_public_endpoint_url: str | None = None
    s3_access_key: str = "healthflow"
    s3_secret_key: SecretStr = SecretStr("healthflow-minio")
    s3_region: str = "us-east-1"
    s3_bucket: str | None = None  # default: healthflow-<service>
    # Multipart part size in bytes (S3's minimum is 5 MiB); one part is held in memory.
    s3_part_size: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024, le=5 * 1024**3)
    s3_presign_ttl: float = Field(default=300.0, ge=1, le=7 * 24 * 3600)  # seconds
    s3_timeout: float = Field(default=30.0, gt=0)  # seconds per HTTP read/connect

    @property
    def s3_secure(self) -> bool:
        return self.s3_endpoint_url.lower().startswith("https://")

    @property
    def bucket_name(self) -> str:
        return self.s3_bucket or f"healthflow-{self.service_name}".replace("_", "-").lower()

    @property
    def database_name(self) -> str:
        return self.mongodb_database or f"healthflow_{self.service_name}"

    def own_production_problems(self) -> list[str]:
        """A service's own production refusals beyond the shared ones (a secret that must
        be set although its default is unset, an endpoint that must not be local), one
        ``"VARIABLE: why"`` each; :func:`production_problems` adds them."""
        return []

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Prefixed variables win; the unprefixed platform-wide ones are the fallback. Each
        # variable's <VARIABLE>_FILE comes right after it.
        prefix = settings_cls.model_config.get("env_prefix", "") or ""
        shared_env = EnvSettingsSource(settings_cls, env_prefix="")
        return (init_settings, env_settings, FileVariablesSource(settings_cls, prefix),
                dotenv_settings, shared_env, FileVariablesSource(settings_cls, ""),
                file_secret_settings)


class FileVariablesSource(PydanticBaseSettingsSource):
    """Fields read from the files ``<env_prefix><FIELD>_FILE`` names (Docker secrets).

    A field whose class also has a ``<field>_file`` field (``key_encryption_keys_file``)
    is left to the class, which reads that file itself.

    Raises (when called):
        ConfigurationError: a variable and its ``_FILE`` are both set, the file cannot be
            read, or a list/mapping field's file is not JSON; naming the variable.
    """

    def __init__(self, settings_cls: type[BaseSettings], env_prefix: str) -> None:
        super().__init__(settings_cls)
        self.env_prefix = env_prefix

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        values: dict[str, Any] = {}
        for name, field in fields.items():
            if f"{name}_file" in fields:
                continue
            variable = f"{self.env_prefix}{name}".upper()
            path = os.environ.get(f"{variable}_FILE", "").strip()
            if not path:
                continue
            if variable in os.environ:
                raise ConfigurationError(f"{variable} and {variable}_FILE are both set: "
                                         "set one of them")
            try:
                text = Path(path).read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
            except OSError as exc:
                raise ConfigurationError(
                    f"{variable}_FILE: cannot read {path} ({exc.strerror or exc})") from None
            if not text.strip():
                continue
            if self.field_is_complex(field):
                try:
                    values[name] = self.decode_complex_value(name, field, text)
                except ValueError:
                    raise ConfigurationError(
                        f"{variable}_FILE: {path} does not hold JSON") from None
            else:
                values[name] = text
        return values


def env_name(settings_cls: type[BaseSettings], field: str) -> str:
    """The environment variable that sets ``field`` for ``settings_cls``."""
    prefix = settings_cls.model_config.get("env_prefix", "") or ""
    return f"{prefix}{field}".upper()


def production_problems(settings: ServiceSettings) -> list[str]:
    """What production refuses in ``settings``, one ``"VARIABLE: why"`` each (empty when
    ``healthflow_env`` is not ``production``)."""
    if settings.healthflow_env != "production":
        return []
    cls = type(settings)
    problems = []
    for name, field in cls.model_fields.items():
        if name in cls.unused_fields:
            continue
        value, default = getattr(settings, name), field.default
        if (isinstance(value, SecretStr) and isinstance(default, SecretStr)
                and value.get_secret_value() == default.get_secret_value()):
            problems.append(f"{env_name(cls, name)}: is the built-in default secret")
        elif name in cls.stand_in_fields and value == default:
            problems.append(f"{env_name(cls, name)}: is the development stand-in's "
                            f"default ({default}); set the production one")
    mongo = urlsplit(settings.mongodb_url)
    x509 = "MONGODB-X509" in parse_qs(mongo.query).get("authMechanism", [])
    if "mongodb_url" not in cls.unused_fields and not (
            mongo.username and mongo.password) and not x509:
        problems.append(f"{env_name(cls, 'mongodb_url')}: has no credentials "
                        "(user:password@ or authMechanism=MONGODB-X509)")
    if "amqp_url" not in cls.unused_fields and urlsplit(
            settings.amqp_url).username in (None, "", "guest"):
        problems.append(f"{env_name(cls, 'amqp_url')}: uses no or RabbitMQ's guest account")
    if settings.internal_service_key is None and settings.internal_token is None:
        problems.append(f"{env_name(cls, 'internal_token')} (or INTERNAL_SERVICE_KEY): "
                        "unset, the built-in development key would prove this service")
    return problems + settings.own_production_problems()


def load_settings(settings_cls: type[S], **overrides: Any) -> S:
    """Build ``settings_cls`` from the environment (and check it for production).

    Raises:
        ConfigurationError: naming each offending variable and why it was refused.
    """
    try:
        settings = settings_cls(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            problems.append(f"{env_name(settings_cls, field)}: {error['msg']}")
        raise ConfigurationError(
            f"invalid configuration for {settings_cls.__name__}: " + "; ".join(problems)
        ) from None
    refused = production_problems(settings)
    if refused:
        raise ConfigurationError(
            f"HEALTHFLOW_ENV=production refuses {settings_cls.__name__}: " + "; ".join(refused))
    return settings
