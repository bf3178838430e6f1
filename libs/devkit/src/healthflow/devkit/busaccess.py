"""Per-service RabbitMQ users: who may publish, bind and consume what on the event bus.

Each service connects as its own user ``healthflow-<service>`` (``healthflow-<service>.<vhost>``
on a virtual host other than ``/``, so test platforms on one broker never share a password).
Its permissions follow the topology of :mod:`healthflow.common.events.rabbit.topology`
(RabbitMQ "Access Control": configure = declare/delete, write = publish to an exchange or
bind a queue, read = consume a queue or bind from an exchange):

* configure: only its per-process broadcast queues ``healthflow.broadcast.<service>.<…>``
  (revocations). Not ``healthflow.events`` (so it can neither delete nor redeclare the
  shared exchange), not its direct exchange ``healthflow.<service>.direct``, not its
  queue ``healthflow.<service>``, retry queues ``healthflow.<service>.delay.<ms>ms`` or DLQ
  ``healthflow.<service>.dlq``: the platform declares those and the direct exchange's
  bindings (:func:`topology`), and the service only checks they exist (passive
  declarations need no permission; ``AMQP_PLATFORM_TOPOLOGY``). So it cannot give its
  own queue a dead-letter exchange of its choosing either.
* write: ``healthflow.events`` and its direct exchange (retries, parking and replay
  publish there, by queue name); its own queues (``queue.bind`` to ``healthflow.events``).
  Never ``amq.default``: publishing to the default exchange, which reaches any queue by
  name, is refused with ``ACCESS_REFUSED`` (403).
* read: ``healthflow.events`` (``queue.bind``) and its own queues (``basic.consume``,
  ``basic.get``). Not its direct exchange: ``exchange.bind`` needs write on the
  destination and read on the source, so a service that could read the exchange it
  publishes to without topic permissions could bind it to ``healthflow.events`` and
  inject any event type under any routing key; another's queue or exchange it can
  neither read nor write, so no binding reaches them.
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
    consumes: bool = True  # has a queue (and retry queues, DLQ) the platform declares

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


def service_access(service: str, publishes: Sequence[str], binds: Sequence[str],
                   consumes: bool = True) -> ServiceAccess:
    """The permissions of ``service``, which publishes the event types ``publishes`` and
    binds its queues with the topic patterns ``binds`` (its own queue when ``consumes``)."""
    own = re.escape(f"healthflow.{service}")
    broadcast = re.escape(f"healthflow.broadcast.{service}.") + ".+"
    exchange = re.escape(EXCHANGE)
    direct = own + re.escape(".direct")
    queues = rf"{own}(\.(delay\.[0-9]+ms|dlq))?"
    return ServiceAccess(
        service=service,
        configure=f"^({broadcast})$",
        write=f"^({exchange}|{direct}|{queues}|{broadcast})$",
        read=f"^({exchange}|{queues}|{broadcast})$",
        topic_write=_alternatives(publishes),
        topic_read=_alternatives(binds),
        consumes=consumes,
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
            consumes=bool(consumers.get(name)),
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


RETRY_DELAYS = (1.0, 5.0, 30.0)  # seconds: the services' default ``retry_delays``


def topology(access: Mapping[str, ServiceAccess], vhost: str,
             retry_delays: Sequence[float] = RETRY_DELAYS) -> dict[str, object]:
    """A RabbitMQ definitions document declaring what the services' users may not (see the
    module docstring): ``healthflow.events``, and for each service that ``consumes`` its
    direct exchange, queue, DLQ and one retry queue per entry of ``retry_delays``
    (seconds; the services' ``RETRY_DELAYS`` must be among them), each bound to the
    direct exchange by its own name (:mod:`healthflow.common.events.rabbit.topology`)."""
    from healthflow.common.events.rabbit.topology import (
        direct_exchange_name,
        retry_queue_arguments,
        retry_queue_name,
    )
    from healthflow.common.events.transport import dead_letter_queue_name, queue_name

    def exchange(name: str, kind: str) -> dict[str, object]:
        return {"name": name, "vhost": vhost, "type": kind, "durable": True,
                "auto_delete": False, "internal": False, "arguments": {}}

    exchanges, queues, bindings = [exchange(EXCHANGE, "topic")], [], []
    for name in sorted(n for n, a in access.items() if a.consumes):
        exchanges.append(exchange(direct_exchange_name(name), "direct"))
        own: list[tuple[str, Mapping[str, object]]] = [
            (queue_name(name), {}), (dead_letter_queue_name(name), {})]
        own += [(retry_queue_name(name, d), retry_queue_arguments(name, d))
                for d in sorted(set(retry_delays))]
        for queue, arguments in own:
            queues.append({"name": queue, "vhost": vhost, "durable": True,
                           "auto_delete": False, "arguments": dict(arguments)})
            bindings.append({"source": direct_exchange_name(name), "vhost": vhost,
                             "destination": queue, "destination_type": "queue",
                             "routing_key": queue, "arguments": {}})
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}


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
    ``RABBITMQ_PASSWORD_<SERVICE>`` (a Kubernetes Secret), and sets its permissions, after
    declaring the :func:`topology` (services then set ``AMQP_PLATFORM_TOPOLOGY=true``),
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
             "}", "",
             "# The exchanges, queues and bindings the users may not declare (busaccess.topology,",
             f"# retry delays {', '.join(f'{d:g}' for d in RETRY_DELAYS)} s: the services' "
             "RETRY_DELAYS must be among them).",
             "$ctl import_definitions --format json <<EOF",
             json.dumps(topology(access, "${vhost}"), sort_keys=True),
             "EOF", ""]
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
