"""Per-service RabbitMQ users: who may publish, bind and consume what on the event bus.

Each service connects as its own user ``healthflow-<service>`` (``healthflow-<service>.<vhost>``
on a virtual host other than ``/``, so test platforms on one broker never share a password).
Its permissions follow the topology of :mod:`healthflow.common.events.rabbit.topology`
(RabbitMQ "Access Control": configure = declare/delete, write = publish to an exchange or
bind a queue, read = consume a queue or bind from an exchange):

* configure: the ``healthflow.events`` exchange (declared by every publisher), its own
  direct exchange ``healthflow.<service>.direct``, its queue ``healthflow.<service>``, its
  retry queues ``healthflow.<service>.delay.<ms>ms``, its DLQ ``healthflow.<service>.dlq``
  and its per-process broadcast queues ``healthflow.broadcast.<service>.<…>`` (revocations).
* write: ``healthflow.events`` and its direct exchange (retries, parking and replay
  publish there, by queue name; a retry queue dead-letters there); its own queues
  (``queue.bind``). Never ``amq.default``: publishing to the default exchange, which
  reaches any queue by name, is refused with ``ACCESS_REFUSED`` (403), and so is
  declaring a queue whose dead-letter exchange is the default one.
* read: both exchanges (``queue.bind``) and its own queues (``basic.consume``).
* topic permissions on ``healthflow.events``: write = exactly the event types the contracts
  (``libs/contracts``) say it publishes, so publishing another service's type is refused
  with ``ACCESS_REFUSED`` (403); read = exactly the binding keys it subscribes with (its
  consumer's patterns and the revocation broadcast's).

The policy is computed from the contracts and the services' consumers by ``make docs``
(:func:`main`) into ``bus_access.json`` beside this module (building every app takes
seconds, too long for each platform start), and into ``deploy/rabbitmq/`` for compose and
Kubernetes. Applying it locally: :mod:`healthflow.devkit.bususers`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

EXCHANGE = "healthflow.events"
USER_PREFIX = "healthflow-"
POLICY_FILE = "bus_access.json"


@dataclass(frozen=True)
class ServiceAccess:
    """One service's RabbitMQ permissions (regular expressions, RabbitMQ's PCRE dialect)."""

    service: str
    configure: str
    write: str
    read: str
    topic_write: str
    topic_read: str

    def user(self, vhost: str = "/") -> str:
        """``healthflow-<service>`` on ``/``, ``healthflow-<service>.<vhost>`` elsewhere."""
        return user_name(self.service, vhost)


def user_name(service: str, vhost: str = "/") -> str:
    """The RabbitMQ user of ``service`` on ``vhost`` (see the module docstring)."""
    return USER_PREFIX + service + ("" if vhost == "/" else f".{vhost}")


def _alternatives(items: Iterable[str]) -> str:
    """``^(a|b)$`` of the escaped items; ``^$`` (nothing but the empty key) when none."""
    escaped = sorted({re.escape(item) for item in items})
    return f"^({'|'.join(escaped)})$" if escaped else "^$"


def service_access(service: str, publishes: Sequence[str], binds: Sequence[str]) -> ServiceAccess:
    """The permissions of ``service``, which publishes the event types ``publishes`` and
    binds its queues with the topic patterns ``binds``."""
    own = re.escape(f"healthflow.{service}")
    broadcast = re.escape(f"healthflow.broadcast.{service}.") + ".+"
    exchange = re.escape(EXCHANGE)
    direct = own + re.escape(".direct")
    queues = rf"{own}(\.(delay\.[0-9]+ms|dlq))?"
    everything = f"^({exchange}|{direct}|{queues}|{broadcast})$"
    return ServiceAccess(
        service=service,
        configure=everything,
        write=everything,
        read=everything,
        topic_write=_alternatives(publishes),
        topic_read=_alternatives(binds),
    )


def policy(services: Iterable[str], publishers: Mapping[str, str],
           consumers: Mapping[str, Sequence[str]],
           broadcast: Sequence[str]) -> dict[str, ServiceAccess]:
    """Every service's access: ``publishers`` maps an event type to its publishing service
    (the contracts), ``consumers`` a service to its subscription patterns, ``broadcast``
    the patterns every process binds (the revocation types)."""
    return {
        name: service_access(
            name,
            [type_ for type_, publisher in publishers.items() if publisher == name],
            [*consumers.get(name, ()), *broadcast],
        )
        for name in sorted(services)
    }


def collect() -> dict[str, ServiceAccess]:
    """The policy from the installed contracts and services (builds every app: seconds)."""
    from healthflow.common import catalog
    from healthflow.common.revocation import REVOCATION_TYPES
    from healthflow.common.topology import SERVICES
    from healthflow.contracts import contracts

    _, consumers = catalog.collect()
    publishers = {t: str(m.event_publisher) for t, m in contracts().items()}
    return policy(SERVICES, publishers, consumers, REVOCATION_TYPES)


def render(access: Mapping[str, ServiceAccess]) -> str:
    """The JSON kept as ``bus_access.json`` (sorted, one service per key)."""
    return json.dumps({n: asdict(a) for n, a in sorted(access.items())}, indent=2,
                      sort_keys=True) + "\n"


def load() -> dict[str, ServiceAccess]:
    """The committed policy (``bus_access.json``, regenerated by ``make docs``)."""
    text = resources.files(__package__).joinpath(POLICY_FILE).read_text()
    return {name: ServiceAccess(**fields) for name, fields in json.loads(text).items()}


def definitions(access: Mapping[str, ServiceAccess], vhost: str,
                password_hashes: Mapping[str, str] | None = None) -> dict[str, object]:
    """A RabbitMQ definitions document (``rabbitmqctl import_definitions``,
    ``load_definitions``): ``permissions`` and ``topic_permissions`` of every service's
    user on ``vhost``, and its ``users`` when ``password_hashes`` (service → RabbitMQ
    ``rabbit_password_hashing_sha256`` hash, see :func:`password_hash`) is given."""
    document: dict[str, object] = {
        "permissions": [
            {"user": a.user(vhost), "vhost": vhost, "configure": a.configure,
             "write": a.write, "read": a.read} for a in access.values()],
        "topic_permissions": [
            {"user": a.user(vhost), "vhost": vhost, "exchange": EXCHANGE,
             "write": a.topic_write, "read": a.topic_read} for a in access.values()],
    }
    if password_hashes is not None:
        document["users"] = [
            {"name": a.user(vhost), "password_hash": password_hashes[name], "tags": [],
             "hashing_algorithm": "rabbit_password_hashing_sha256"}
            for name, a in access.items()]
    return document


def password_hash(password: str, salt: bytes) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + SHA-256(salt + password)),
    ``salt`` 4 random bytes (RabbitMQ "Credentials and Passwords", computing a hash)."""
    import base64
    import hashlib

    if len(salt) != 4:
        raise ValueError("RabbitMQ password salts are 4 bytes")
    digest = hashlib.sha256(salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def init_script(access: Mapping[str, ServiceAccess]) -> str:
    """``deploy/rabbitmq/users.sh``: creates or updates each user with the password in
    the file ``RABBITMQ_PASSWORD_<SERVICE>_FILE`` names (compose's secrets) or in
    ``RABBITMQ_PASSWORD_<SERVICE>`` (a Kubernetes Secret), and sets its permissions,
    through ``rabbitmqctl`` (compose's ``rabbitmq-users`` one-shot; a Kubernetes Job)."""
    lines = ["#!/bin/sh", "# Generated by `make docs` (healthflow.devkit.busaccess); do not edit.",
             "# Each service's RabbitMQ user, password from the file RABBITMQ_PASSWORD_<SERVICE>"
             "_FILE", "# names or from RABBITMQ_PASSWORD_<SERVICE>.",
             "set -eu", 'ctl="rabbitmqctl -q ${RABBITMQ_NODE:+-n $RABBITMQ_NODE}"',
             'vhost="${RABBITMQ_VHOST:-/}"',
             "secret() {  # the value of $1, or the content of the file ${1}_FILE names",
             '  eval "file=\\${${1}_FILE:-}"',
             '  if [ -n "$file" ]; then cat "$file"; '
             'else eval "printf %s \\"\\${$1:?set $1 or ${1}_FILE}\\""; fi',
             "}", ""]
    for name, a in access.items():
        var = f"RABBITMQ_PASSWORD_{name.upper()}"
        user = a.user()
        lines += [
            f'pw="$(secret {var})"',
            f"$ctl add_user '{user}' \"$pw\" 2>/dev/null || "
            f"$ctl change_password '{user}' \"$pw\"",
            f"$ctl set_permissions -p \"$vhost\" '{user}' '{a.configure}' '{a.write}' "
            f"'{a.read}'",
            f"$ctl set_topic_permissions -p \"$vhost\" '{user}' '{EXCHANGE}' "
            f"'{a.topic_write}' '{a.topic_read}'", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m healthflow.devkit.busaccess``: write ``bus_access.json`` and
    ``deploy/rabbitmq/users.sh`` (``make docs``)."""
    access = collect()
    here = Path(__file__).with_name(POLICY_FILE)
    here.write_text(render(access))
    deploy = Path(argv[0] if argv else "deploy") / "rabbitmq"
    deploy.mkdir(parents=True, exist_ok=True)
    (deploy / "users.sh").write_text(init_script(access))
    print(f"{here.name} and {deploy}/ regenerated ({len(access)} services)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
