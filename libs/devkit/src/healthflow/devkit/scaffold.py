"""``make new-service NAME=x``: a new service with every module, one route, one event,
and unit, integration and end-to-end tests, from the templates beside this module.

Nothing shared is edited by hand: the service declares itself in its manifest
(an entry point, :mod:`healthflow.common.manifest`), its event contract is a new
module of ``healthflow.contracts`` (found there by name), ``uv lock`` records the
new workspace member, and ``make docs`` regenerates what is generated: the
services part of ``docker-compose.yml`` (:func:`compose_apps`), the contract's
kept JSON Schema, the event catalog and the AsyncAPI document.
Templates use :class:`string.Template` placeholders: ``${name}``, ``${NAME}``,
``${port}``, ``${summary}``.
"""

from __future__ import annotations

import argparse
import keyword
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from string import Template

from healthflow.common.manifest import ServiceManifest
from healthflow.devkit import composesecrets

TEMPLATES = Path(__file__).with_name("templates") / "service"
CONTRACT = Path(__file__).with_name("templates") / "contracts" / "contract.py.tmpl"
NAME = re.compile(r"^[a-z][a-z0-9]{1,30}$")
BEGIN, END = "  # BEGIN generated from the service manifests", "  # END generated"
SECRETS_BEGIN = "  # BEGIN generated secrets (their files: make compose-secrets)"
SECRETS_END = "  # END generated secrets"
COMPOSE_GATEWAY_ADDRESS = "172.31.250.10"
"""The gateway's fixed address on compose's ``backend`` network (its subnet,
172.31.250.0/24, is set in the hand-written part): the auth service trusts this peer's
``X-Forwarded-For`` to name the client, so failed-login budgets are per client address
(issue 16), and no other container can choose the address a login is counted under."""


def render_service(root: Path, name: str, port: int, summary: str) -> list[Path]:
    """Write ``services/<name>`` from the templates; the files written.

    Raises:
        ValueError: ``name`` is not a lower-case identifier, or the service exists.
    """
    if not NAME.match(name) or keyword.iskeyword(name):
        raise ValueError(f"{name!r}: a service name is 2-31 lower-case letters and digits, "
                         "starting with a letter")
    target = root / "services" / name
    if target.exists():
        raise ValueError(f"{target} exists already")
    values = {"name": name, "NAME": name.upper(), "port": str(port), "summary": summary}
    written = []
    for template in sorted(TEMPLATES.rglob("*.tmpl")):
        relative = template.relative_to(TEMPLATES).with_suffix("")  # drop .tmpl
        parts = relative.parts
        if parts[0] == "src":  # src/x.py -> src/healthflow/<name>/x.py
            relative = Path("src", "healthflow", name, *parts[1:])
        out = target / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(Template(template.read_text()).substitute(values))
        written.append(out)
    contract = root / "libs" / "contracts" / "src" / "healthflow" / "contracts" / f"{name}.py"
    contract.write_text(Template(CONTRACT.read_text()).substitute(values))
    written.append(contract)
    return written


def _listeners(m: ServiceManifest) -> list[str]:
    """A service's own listeners (its manifest's ``listeners``, e.g. xray's DICOM SCP):
    the port in its environment, published as ``${<NAME>_<LISTENER>_PUBLISH:-127.0.0.1:
    <port>}:<port>`` (loopback unless the operator names an interface: modalities on the
    hospital network reach it there, not through the HTTP gateway), and the ``edge``
    network besides ``backend``, since an internal network publishes nothing."""
    if not m.listeners:
        return []
    env = m.listener_env()
    lines = [f'      {key}: "{port}"' for key, port in env.items()]
    lines += ["    ports:"]
    lines += [f'      - "${{{key.removesuffix("_PORT")}_PUBLISH:-127.0.0.1:{port}}}:{port}"'
              for key, port in env.items()]
    return [*lines, "    networks: [backend, edge]"]


def compose_apps(manifests: Iterable[ServiceManifest], gateway_port: int) -> str:
    """The generated part of ``docker-compose.yml``: one container per service (with
    its listener ports published, :func:`_listeners`, its shared ``volumes``, and the
    ``<NAME>_URL`` of each service its manifest ``calls``) and the gateway with its
    upstreams and health dependencies (YAML, two-space indented)."""
    manifests = list(manifests)
    ports = {m.name: m.port for m in manifests}
    names = [m.name for m in manifests]
    lines = [BEGIN]
    for m in manifests:
        lines += [f"  {m.name}:", "    <<: *app",
                  f"    build: {{context: ., dockerfile: deploy/Dockerfile, "
                  f"args: {{SERVICE: {m.name}}}}}",
                  f"    image: healthflow/{m.name}:${{HEALTHFLOW_TAG:-dev}}",
                  *_secrets(m.name, m.env_prefix, names),
                  "    environment:", "      <<: *app-env",
                  f'      {m.env_prefix}PORT: "{m.port}"',
                  # its own RabbitMQ user (healthflow.devkit.busaccess; rabbitmq-users below)
                  *_secret_files(m.name, m.env_prefix, names)]
        # environment first: _listeners ends in the ports and networks blocks
        lines += [f"      {c.upper()}_URL: http://{c}:{ports[c]}" for c in m.calls if c in ports]
        if m.name == "auth":  # the gateway's X-Forwarded-For names the client
            lines += [f"""      AUTH_TRUSTED_PROXIES: '["{COMPOSE_GATEWAY_ADDRESS}/32"]'"""]
        if m.volumes:
            lines += ["    volumes:"] + [f"      - {name}:{path}"
                                         for name, path in m.volumes.items()]
        lines += [*_listeners(m), ""]
    lines += ["  gateway:", "    <<: *app",
              "    build: {context: ., dockerfile: deploy/Dockerfile, args: {SERVICE: gateway}}",
              "    image: healthflow/gateway:${HEALTHFLOW_TAG:-dev}",
              *_secrets("gateway", "GATEWAY_", names),
              "    environment:", "      <<: *app-env", f'      GATEWAY_PORT: "{gateway_port}"',
              *_secret_files("gateway", "GATEWAY_", names)]
    lines += [f"      GATEWAY_UPSTREAM_{m.name.upper()}: http://{m.name}:{m.port}"
              for m in manifests]
    lines += ["    ports:", f'      - "${{GATEWAY_PUBLISH:-127.0.0.1:{gateway_port}}}:'
              f'{gateway_port}"', "    networks:",
              f"      backend: {{ipv4_address: {COMPOSE_GATEWAY_ADDRESS}}}", "      edge: {}",
              "    depends_on:",
              "      <<: *app-deps"]
    lines += [f"      {m.name}: {{condition: service_healthy}}" for m in manifests]
    lines += ["", *_bus_users(manifests), END]
    return "\n".join(lines) + "\n"


def _secrets(name: str, prefix: str, services: list[str]) -> list[str]:
    """The ``secrets:`` an app is granted (:func:`composesecrets.app_secrets`)."""
    granted = dict.fromkeys(composesecrets.app_secrets(name, prefix, services).values())
    return ["    secrets:", *[f"      - {secret}" for secret in granted]]


def _secret_files(name: str, prefix: str, services: list[str]) -> list[str]:
    """``<VARIABLE>_FILE: /run/secrets/<secret>`` of an app's secrets (never the values)."""
    return [f"      {variable}: {composesecrets.RUN}/{secret}"
            for variable, secret in composesecrets.app_secrets(name, prefix, services).items()]


def compose_secrets(manifests: Iterable[ServiceManifest]) -> str:
    """The generated part of the top-level ``secrets:``: each a file of
    ``deploy/compose/secrets/`` (written by :func:`composesecrets.ensure`)."""
    lines = [SECRETS_BEGIN]
    lines += [f"  {name}: {{file: ./{composesecrets.SECRETS_DIR}/{name}}}"
              for name in composesecrets.names(m.name for m in manifests)]
    return "\n".join([*lines, SECRETS_END]) + "\n"


def _bus_users(manifests: list[ServiceManifest]) -> list[str]:
    """The one-shot ``rabbitmq-users``: runs ``deploy/rabbitmq/users.sh`` (generated by
    ``make docs``) with ``rabbitmqctl`` against the broker's node, the Erlang cookie read
    from the broker's data volume; every app waits for it to succeed (``x-app``)."""
    lines = ["  rabbitmq-users:", "    image: rabbitmq:4-management", "    user: \"999\"",
             "    networks: [backend]", "    restart: on-failure",
             "    entrypoint: [\"sh\", \"/users.sh\"]",
             "    depends_on:", "      rabbitmq: {condition: service_healthy}",
             "    volumes:", "      - rabbitmq-data:/var/lib/rabbitmq:ro",
             "      - ./deploy/rabbitmq/users.sh:/users.sh:ro",
             "    secrets:"]
    lines += [f"      - {composesecrets.bus_password_secret(m.name)}" for m in manifests]
    lines += ["    environment:", "      HOME: /var/lib/rabbitmq",
              "      RABBITMQ_NODE: rabbit@rabbitmq"]
    lines += [f"      RABBITMQ_PASSWORD_{m.name.upper()}_FILE: "
              f"{composesecrets.RUN}/{composesecrets.bus_password_secret(m.name)}"
              for m in manifests]
    return [*lines, ""]


def write_compose(path: Path, manifests: Iterable[ServiceManifest], gateway_port: int) -> bool:
    """Replace the generated parts of the compose file (the apps, the secrets); True when
    it changed."""
    manifests = list(manifests)
    text = path.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END) + 1
    new = text[:start] + compose_apps(manifests, gateway_port) + text[end:]
    start, end = new.index(SECRETS_BEGIN), new.index(SECRETS_END) + len(SECRETS_END) + 1
    new = new[:start] + compose_secrets(manifests) + new[end:]
    if new == text:
        return False
    path.write_text(new)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m healthflow.devkit.scaffold NAME [--summary TEXT] [--port N]``."""
    from healthflow.common.topology import GATEWAY_PORT, SERVICES

    parser = argparse.ArgumentParser(prog="make new-service NAME=x",
                                     description="Scaffold a HealthFlow service.")
    parser.add_argument("name")
    parser.add_argument("--summary", default=None, help="one line for the docs")
    parser.add_argument("--port", type=int, default=None,
                        help="internal port (default: the next after the highest in use)")
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--no-lock", action="store_true", help="skip `uv lock`")
    args = parser.parse_args(argv)
    port = args.port or max(m.port for m in SERVICES.values()) + 1
    summary = args.summary or f"The {args.name} service."
    try:
        written = render_service(args.root, args.name, port, summary)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Import order depends on the name (isort): let ruff sort what the templates wrote.
    subprocess.run([sys.executable, "-m", "ruff", "check", "--fix", "--quiet", "--select", "I",
                    str(args.root / "services" / args.name)], check=False)
    new = ServiceManifest(args.name, port, summary)
    write_compose(args.root / "docker-compose.yml", [*SERVICES.values(), new], GATEWAY_PORT)
    if not args.no_lock:
        subprocess.run(["uv", "lock"], cwd=args.root, check=True)
    print(f"services/{args.name}: {len(written)} files, port {port}, route /api/v1/{args.name}")
    print("next: make install; make test PYTEST_ARGS=services/" + args.name + "; make run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
