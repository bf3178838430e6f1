"""The production-shape deployment files, checked by parsing (no Docker engine here).

``docker-compose.yml`` is read with PyYAML (anchors and ``<<`` merge keys
resolved as Compose resolves them), ``deploy/Dockerfile`` line by line, and the
Kubernetes template after substituting its placeholders. The service list comes
from :data:`healthflow.common.topology.SERVICES`, so a new service that is not
deployed fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from healthflow.common.topology import GATEWAY_PORT, SERVICES

ROOT = Path(__file__).resolve().parents[3]
APPS = [*SERVICES, "gateway"]
INFRA = ("mongo", "rabbitmq", "minio", "redis")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of deploy/Dockerfile, continuation lines joined."""
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    pairs = []
    for line in logical.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def port_of(name: str) -> int:
    return GATEWAY_PORT if name == "gateway" else SERVICES[name].port


# --------------------------------------------------------------------- compose


def test_every_service_and_the_gateway_are_built_from_the_one_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in APPS:
        assert name in services, f"{name} is missing from docker-compose.yml"
        build = services[name]["build"]
        assert build["context"] == "."
        assert build["dockerfile"] == "deploy/Dockerfile"
        assert build["args"]["SERVICE"] == name


LISTENING = sorted(name for name, m in SERVICES.items() if m.listeners)
"""Services with listeners of their own besides HTTP (xray's DICOM SCP)."""
MEDIA = ("coturn", "janus")
"""Video consultations' media servers: clients send them media (UDP) directly."""


def test_only_the_gateway_and_service_listeners_publish_ports(
        services: dict[str, dict[str, Any]]) -> None:
    publishing = sorted(name for name, spec in services.items() if spec.get("ports"))
    assert publishing == sorted(["gateway", *LISTENING, *MEDIA])
    # Janus's APIs (8088, 7088) are never published: only media, on loopback by default
    for name in MEDIA:
        for mapping in services[name]["ports"]:
            assert str(mapping).startswith("${") and ":-127.0.0.1}" in str(mapping), mapping
            assert not any(f":{api}" in str(mapping) for api in (8088, 7088)), mapping
    assert all(str(p).endswith("/udp") for p in services["janus"]["ports"])
    (mapping,) = services["gateway"]["ports"]
    assert str(mapping).endswith(f":{GATEWAY_PORT}")
    assert "xray" in LISTENING
    for name in LISTENING:
        manifest = SERVICES[name]
        env = services[name]["environment"]
        assert sorted(str(p).rsplit(":", 1)[1] for p in services[name]["ports"]) == sorted(
            str(port) for port in manifest.listeners.values())
        for key, port in manifest.listener_env().items():
            assert env[key] == str(port)
        # published on loopback unless the operator names an interface
        assert all(str(p).startswith(f"${{{name.upper()}_") and "127.0.0.1" in str(p)
                   for p in services[name]["ports"])


def test_services_sit_on_an_internal_network_only(compose: dict[str, Any],
                                                  services: dict[str, dict[str, Any]]) -> None:
    networks = compose["networks"]
    internal = {name for name, spec in networks.items() if (spec or {}).get("internal")}
    assert internal, "no internal network"
    for name, spec in services.items():
        joined = set(spec.get("networks", []))
        assert joined, f"{name} is on the default network"
        if name != "gateway" and name not in LISTENING and name not in MEDIA:
            assert joined <= internal, f"{name} is reachable from outside: {joined}"
    assert set(services["gateway"]["networks"]) & internal


def test_mongo_runs_as_a_single_node_replica_set_and_initiates_it(
    services: dict[str, dict[str, Any]],
) -> None:
    mongo = services["mongo"]
    assert re.match(r"mongo:8(\.|$)", mongo["image"])
    command = mongo["command"]
    command = command if isinstance(command, list) else command.split()
    assert command[command.index("--replSet") + 1] == "rs0"
    probe = " ".join(mongo["healthcheck"]["test"])
    assert "rs.initiate" in probe and "rs0" in probe and "mongo:27017" in probe


def test_infrastructure_is_there_with_the_rabbitmq_management_plugin(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in INFRA:
        assert name in services, f"{name} is missing"
    assert "management" in services["rabbitmq"]["image"]
    assert services["minio"]["image"].startswith("minio/")


def secret_targets(spec: dict[str, Any]) -> dict[str, str]:
    """``{path in the container: secret}`` of a container's ``secrets:`` (short and long
    syntax; a relative target is under /run/secrets, as Compose mounts it)."""
    targets = {}
    for entry in spec.get("secrets") or []:
        source, target = (entry, entry) if isinstance(entry, str) else (
            entry["source"], entry.get("target", entry["source"]))
        targets[target if target.startswith("/") else f"/run/secrets/{target}"] = source
    return targets


@pytest.fixture(scope="module")
def secret_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files ``make compose-secrets`` writes, from an empty environment."""
    from healthflow.devkit import composesecrets

    directory = tmp_path_factory.mktemp("secrets")
    composesecrets.ensure(directory, list(SERVICES), env={})
    return directory


def effective_env(spec: dict[str, Any], secret_files: Path) -> dict[str, str]:
    """A container's environment as the apps' settings see it: each ``X_FILE`` naming a
    mounted secret read into ``X`` (:class:`healthflow.common.settings.FileVariablesSource`)."""
    env = dict(spec["environment"])
    targets = secret_targets(spec)
    for key, value in list(env.items()):
        if key.endswith("_FILE") and value in targets:
            text = (secret_files / targets[value]).read_text().removesuffix("\n")
            env[key.removesuffix("_FILE")] = text
    return env


def test_every_app_service_has_the_environment_it_needs(
    services: dict[str, dict[str, Any]], secret_files: Path,
) -> None:
    auth_jwks = f"http://auth:{SERVICES['auth'].port}/.well-known/jwks.json"
    minio = effective_env(services["minio"], secret_files)
    minio_password = (secret_files / secret_targets(services["minio"])[
        "/run/secrets/" + minio["MINIO_ROOT_PASSWORD_FILE"]]).read_text().strip()
    for name in APPS:
        env = effective_env(services[name], secret_files)
        assert isinstance(services[name]["environment"], dict), f"{name}: not a mapping"
        assert env["TRANSPORT"] == "rabbitmq"
        assert env["JWKS_URL"] == auth_jwks
        assert urlsplit(env["REDIS_URL"]).hostname == "redis"
        assert urlsplit(env["S3_ENDPOINT_URL"]).hostname == "minio"
        assert env["HOST"] == "0.0.0.0", f"{name} would listen on loopback only"
        prefix = "GATEWAY_" if name == "gateway" else SERVICES[name].env_prefix
        assert int(env.get(f"{prefix}PORT") or env.get("PORT") or 0) == port_of(name)
        if name == "gateway":  # no database, broker nor bucket: none of their secrets
            assert not {"MONGODB_URL", "S3_SECRET_KEY", "AMQP_URL"} & set(env), env
            continue
        mongo = urlsplit(env["MONGODB_URL"])
        assert mongo.scheme == "mongodb" and mongo.hostname == "mongo"
        assert parse_qs(mongo.query).get("replicaSet") == ["rs0"], env["MONGODB_URL"]
        amqp = urlsplit(env[f"{prefix}AMQP_URL"])
        assert amqp.scheme == "amqp" and amqp.hostname == "rabbitmq"
        assert amqp.username == f"healthflow-{name}"  # its own RabbitMQ user
        assert amqp.password == (secret_files / f"rabbitmq_password_{name}").read_text().strip()
        assert env["S3_SECRET_KEY"] == minio_password


SECRET_LOOKING = re.compile(r"(PASSWORD|PASS|SECRET|TOKEN|_KEYS?)$|PASSWORD|SECRET|TOKEN")
NOT_SECRET = re.compile(r"^AUDIT_ALLOW_GENERATED_SIGNING_KEY$")
"""A flag whose name looks like one (URLs are checked by value: no ``user:password@``)."""


def test_no_container_gets_a_secret_as_an_environment_value(
        compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    """Secrets are Compose secrets, mounted files (``<VARIABLE>_FILE``), never environment
    values (``docker inspect``, ``/proc/<pid>/environ`` and every child process see those),
    nor command-line arguments (``ps``)."""
    credentials = re.compile(r"://[^/@\s]*:[^/@\s]*@")  # user:password@ in a URL
    for name, spec in services.items():
        for key, value in (spec.get("environment") or {}).items():
            value = str(value)
            assert not credentials.search(value), f"{name}: {key} carries credentials"
            if key.endswith("_FILE"):
                continue
            looks_secret = SECRET_LOOKING.search(key) and not NOT_SECRET.search(key)
            assert not looks_secret, f"{name}: {key} is a secret-looking environment value"
        command = " ".join(map(str, spec.get("command") or []))
        assert not re.search(r"secret=|password=|token=", command, re.I), (name, command)
    # the variables compose read secrets from before are not interpolated anywhere
    text = (ROOT / "docker-compose.yml").read_text()
    for variable in ("RABBITMQ_PASSWORD", "MINIO_ROOT_PASSWORD", "JANUS_API_SECRET",
                     "TURN_SECRET", "KEY_ENCRYPTION_KEYS:-"):
        assert "${" + variable not in text, variable


def test_every_file_variable_names_a_secret_granted_to_its_container(
        compose: dict[str, Any], services: dict[str, dict[str, Any]],
        secret_files: Path) -> None:
    declared = compose["secrets"]
    for name, spec in services.items():
        targets = secret_targets(spec)
        for source in targets.values():
            assert source in declared, f"{name}: secret {source} is not declared"
        for key, value in (spec.get("environment") or {}).items():
            if not key.endswith("_FILE") or name == "minio":
                continue
            assert value in targets, f"{name}: {key} names {value}, which is not mounted"
        if name == "minio":  # the image reads MINIO_ROOT_*_FILE relative to /run/secrets
            for key in ("MINIO_ROOT_USER_FILE", "MINIO_ROOT_PASSWORD_FILE"):
                assert "/run/secrets/" + spec["environment"][key] in targets
    for secret, spec in declared.items():
        assert spec["file"] == f"./deploy/compose/secrets/{secret}", spec
        assert (secret_files / secret).exists(), f"make compose-secrets writes no {secret}"
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "deploy/compose/secrets/" in ignored  # never committed


def test_only_the_services_that_need_a_secret_get_it(services: dict[str, dict[str, Any]]) -> None:
    granted = {name: set(secret_targets(spec).values()) for name, spec in services.items()}
    holders = {secret: {n for n, have in granted.items() if secret in have}
               for secret in {s for have in granted.values() for s in have}}
    assert holders["account_link_secret"] == {"auth", "notification"}
    assert holders["stripe_api_key"] == {"payment"}
    assert holders["twilio_auth_token"] == {"notification"}
    assert holders["janus_api_secret"] == {"teleconference", "janus"}
    assert holders["turn_secret"] == {"teleconference"}
    assert holders["coturn_conf"] == {"coturn"}
    assert holders["key_encryption_keys"] == {"auth", "notification", "prescription", "audit"}
    for name in SERVICES:
        assert holders[f"amqp_url_{name}"] == {name}
        assert holders[f"rabbitmq_password_{name}"] == {"rabbitmq-users"}
    assert granted["gateway"] == {"gateway_metrics_token", "internal_token_gateway"}
    assert holders["internal_service_key"] == {"auth"}  # checks the /internal callers
    for name in [*SERVICES, "gateway"]:  # each caller holds only its own token
        assert holders.get(f"internal_token_{name}") == (None if name == "auth" else {name})


def test_the_gateway_knows_every_upstream(services: dict[str, dict[str, Any]]) -> None:
    env = services["gateway"]["environment"]
    for name, info in SERVICES.items():
        assert env[f"GATEWAY_UPSTREAM_{name.upper()}"] == f"http://{name}:{info.port}"


def test_start_order_waits_for_healthy_dependencies(services: dict[str, dict[str, Any]]) -> None:
    for name in APPS:
        depends = services[name]["depends_on"]
        for needed in ("mongo", "rabbitmq"):
            assert depends[needed]["condition"] == "service_healthy", (name, needed)
    gateway = services["gateway"]["depends_on"]
    for name in SERVICES:
        assert gateway[name]["condition"] == "service_healthy"
    assert gateway["redis"]["condition"] == "service_healthy"


def test_every_container_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    """Every long-running container; a one-shot job (one others wait on until it has
    *completed*, e.g. ``rabbitmq-users``) is instead never restarted once it succeeded."""
    one_shots = {dependency for spec in services.values()
                 for dependency, wait in (spec.get("depends_on") or {}).items()
                 if isinstance(wait, dict)
                 and wait.get("condition") == "service_completed_successfully"}
    for name, spec in services.items():
        if name in one_shots:
            assert spec.get("restart") in ("on-failure", "no", None), name
            continue
        test = spec.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"


# --------------------------------------------------------------------- Dockerfile


def test_dockerfile_is_parametrised_by_service_and_runs_unprivileged() -> None:
    instructions = dockerfile_instructions()
    stages = [i for i, (kw, _) in enumerate(instructions) if kw == "FROM"]
    final = instructions[stages[-1]:]
    args = [rest for kw, rest in instructions if kw == "ARG"]
    assert any(a == "SERVICE" or a.startswith("SERVICE=") for a in args)
    syncs = [rest for kw, rest in instructions if kw == "RUN" and "uv sync" in rest]
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs)
    assert all('--package "healthflow-${SERVICE}"' in s for s in syncs)
    users = [rest for kw, rest in final if kw == "USER"]
    assert users, "the runtime stage has no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    (cmd,) = [rest for kw, rest in final if kw == "CMD"]
    assert "python -m healthflow.$SERVICE" in cmd
    (health,) = [rest for kw, rest in final if kw == "HEALTHCHECK"]
    assert "healthcheck.py" in health
    assert "/livez" in (ROOT / "deploy" / "healthcheck.py").read_text()


# --------------------------------------------------------------------- Kubernetes


def test_kubernetes_deployments_are_hardened_probed_and_autoscaled() -> None:
    """Every Deployment of the generated manifests (``make docs``) runs as non-root with
    the shared probes, and has an autoscaler aimed at it."""
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "healthflow.yaml").read_text()))
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert deployments
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    targets = {d["spec"]["scaleTargetRef"]["name"] for d in docs
               if d["kind"] == "HorizontalPodAutoscaler"}
    assert targets == {d["metadata"]["name"] for d in deployments}


def test_a_service_knows_the_services_it_calls(services: dict[str, dict[str, Any]]) -> None:
    """Manifest ``calls`` → ``<NAME>_URL`` in the caller's environment (records reads
    prescriptions for its FHIR export)."""
    assert "prescription" in SERVICES["records"].calls
    for name, manifest in SERVICES.items():
        env = services[name]["environment"]
        for callee in manifest.calls:
            assert env[f"{callee.upper()}_URL"] == f"http://{callee}:{SERVICES[callee].port}"


def test_turn_relays_only_media_and_never_into_the_backend(
        compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    """Every patient and guest gets TURN credentials: a relay on the backend network, or
    one that opens TCP connections, would let them reach MongoDB, RabbitMQ or Janus's
    APIs through it (coturn relays to any address it can reach unless told otherwise)."""
    internal = {name for name, spec in compose["networks"].items()
                if (spec or {}).get("internal")}
    coturn = services["coturn"]
    assert not set(coturn["networks"]) & internal, coturn["networks"]
    command = coturn["command"]
    assert "--no-tcp-relay" in command and "--no-multicast-peers" in command
    denied = {c.split("=", 1)[1] for c in command if c.startswith("--denied-peer-ip=")}
    assert {"0.0.0.0-0.255.255.255", "127.0.0.0-127.255.255.255",
            "169.254.0.0-169.254.255.255"} <= denied


def test_janus_and_teleconference_share_the_recordings_volume_as_the_same_user(
        compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    """Janus writes each recording's ``.mjr`` files where the teleconference service reads
    and deletes them: one named volume at the same path in both containers (the path is
    also the one the service hands Janus as the room's ``rec_dir``), and Janus runs as
    the app image's user."""
    [(volume, path)] = SERVICES["teleconference"].volumes.items()
    mount = f"{volume}:{path}"
    assert mount in services["teleconference"]["volumes"]
    assert mount in services["janus"]["volumes"]
    assert volume in compose["volumes"]
    env = services["teleconference"]["environment"]
    assert env["TELECONFERENCE_JANUS_RECORDINGS_DIR"] == path
    janus_image = (ROOT / "deploy/janus/Dockerfile").read_text()
    app_image = (ROOT / "deploy/Dockerfile").read_text()
    assert "--uid 10001" in janus_image and "--uid 10001" in app_image
    assert f"mkdir -p {path}" in janus_image


def test_auth_trusts_the_gateways_forwarded_for_and_no_other_container(
        compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    """Issue 16: behind the gateway, failed-login budgets are per client address. The
    gateway has a fixed address on the backend network, and auth trusts exactly that
    peer's X-Forwarded-For (not the loopback default, which would make every client one)."""
    import ipaddress
    import json

    subnet = ipaddress.ip_network(compose["networks"]["backend"]["ipam"]["config"][0]["subnet"])
    gateway = ipaddress.ip_address(services["gateway"]["networks"]["backend"]["ipv4_address"])
    assert gateway in subnet
    trusted = json.loads(services["auth"]["environment"]["AUTH_TRUSTED_PROXIES"])
    assert [ipaddress.ip_network(t) for t in trusted] == [ipaddress.ip_network(f"{gateway}/32")]
    # the gateway itself believes no client's X-Forwarded-For (it is the edge here)
    assert int(services["gateway"]["environment"].get("GATEWAY_TRUSTED_PROXY_HOPS", 0)) == 0
