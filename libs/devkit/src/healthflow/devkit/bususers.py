"""Create the per-service RabbitMQ users on the local broker (``make run``, test platforms).

:func:`ensure_service_users` gives each service of :mod:`healthflow.devkit.busaccess`'s
policy its user on the virtual host of ``AMQP_URL`` with a random password (kept in
``<var dir>/rabbitmq-users.json``, mode 0600, and reused while the file lives), its
permissions and its topic permissions, in **one** ``rabbitmqctl import_definitions``
call (one CLI call costs a second or more on a loaded machine; forty-two separate
``add_user``/``set_permissions``/``set_topic_permissions`` calls would cost a minute).
Importing is idempotent: an existing user gets the file's password and the current
permissions. :func:`delete_service_users` removes the users of a virtual host that is
being deleted (the test fixtures' ``rabbitmq_vhost``).

``HEALTHFLOW_BUS_USERS=shared`` opts out (every service then connects with ``AMQP_URL``'s
own account, as before): for a broker this machine's ``rabbitmqctl`` cannot administer.
Without the opt-out, a missing ``rabbitmqctl`` or a failed import is an error with the
way out in its message, never a silent fall-back to the shared account.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from healthflow.devkit import busaccess
from healthflow.devkit.console import Console
from healthflow.devkit.discovery import Component

OPT_OUT = "HEALTHFLOW_BUS_USERS"
CREDENTIALS_FILE = "rabbitmq-users.json"
CTL_TIMEOUT = 120.0  # seconds one rabbitmqctl call may take
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class BusUsersError(RuntimeError):
    """The per-service users could not be created (the message says why and what to do)."""


def opted_out(env: Mapping[str, str]) -> bool:
    """Whether ``HEALTHFLOW_BUS_USERS=shared`` asks for the shared ``AMQP_URL`` account."""
    return env.get(OPT_OUT, "").strip().lower() == "shared"


def vhost_of(amqp_url: str) -> str:
    """The virtual host an AMQP URL names (``/`` when its path is empty or ``/``)."""
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def service_url(amqp_url: str, user: str, password: str) -> str:
    """``amqp_url`` with ``user:password`` instead of its own credentials."""
    parts = urlsplit(amqp_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _rabbitmqctl(*args: str, stdin: str | None = None) -> None:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise BusUsersError(
            "rabbitmqctl is not on PATH, so the per-service RabbitMQ users cannot be created: "
            f"run `make deps`, or set {OPT_OUT}=shared to connect every service with "
            "AMQP_URL's account")
    result = subprocess.run([ctl, "-q", *args], capture_output=True, text=True, input=stdin,
                            timeout=CTL_TIMEOUT, check=False)
    if result.returncode != 0:
        raise BusUsersError(
            f"rabbitmqctl {args[0]} failed ({result.stderr.strip() or result.returncode}): "
            f"run as a user that may administer the local broker, or set {OPT_OUT}=shared")


def _passwords(path: Path, users: list[str]) -> dict[str, str]:
    """The passwords in ``path`` for ``users``, new random ones added (file mode 0600)."""
    try:
        known: dict[str, str] = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    wanted = {user: known.get(user) or secrets.token_urlsafe(24) for user in users}
    if wanted != {u: known.get(u) for u in users}:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(known | wanted, out, indent=2, sort_keys=True)
    return wanted


def ensure_service_users(amqp_url: str, var_dir: Path, services: list[str] | None = None,
                         retry_delays: Sequence[float] = busaccess.RETRY_DELAYS,
                         ) -> dict[str, str]:
    """Create or update the users of ``services`` (default: all) on ``amqp_url``'s virtual
    host of the local broker, and the exchanges, queues (one retry queue per entry of
    ``retry_delays``, seconds) and bindings their users may not declare
    (:func:`healthflow.devkit.busaccess.topology`; the services then run with
    ``AMQP_PLATFORM_TOPOLOGY=true``); returns service → that service's own AMQP URL.

    Raises:
        BusUsersError: ``rabbitmqctl`` missing or refusing (its message says what to do).
    """
    host = urlsplit(amqp_url).hostname or ""
    if host not in LOOPBACK:
        raise BusUsersError(
            f"AMQP_URL names the broker at {host!r}, which this machine's rabbitmqctl does not "
            f"administer: create the users there (deploy/rabbitmq/users.sh) and give each "
            f"service <SERVICE>_AMQP_URL, with {OPT_OUT}=shared")
    policy = busaccess.load()
    if unknown := sorted(set(services or ()) - set(policy)):
        raise BusUsersError(f"no RabbitMQ permissions for {', '.join(unknown)} in "
                            f"{busaccess.POLICY_FILE}: run `make docs`")
    access = {n: a for n, a in policy.items() if services is None or n in services}
    vhost = vhost_of(amqp_url)
    passwords = _passwords(var_dir / CREDENTIALS_FILE, [a.user(vhost) for a in access.values()])
    hashes = {n: busaccess.password_hash(passwords[a.user(vhost)], secrets.token_bytes(4))
              for n, a in access.items()}
    document = busaccess.definitions(access, vhost, hashes) | busaccess.topology(
        access, vhost, retry_delays)
    # on standard input: rabbitmqctl runs as the rabbitmq user, who may not read var_dir
    _rabbitmqctl("import_definitions", "--format", "json", stdin=json.dumps(document))
    return {n: service_url(amqp_url, a.user(vhost), passwords[a.user(vhost)])
            for n, a in access.items()}


async def for_platform(amqp_url: str, var_dir: Path, components: Sequence[Component],
                       console: Console) -> dict[str, str]:
    """:func:`ensure_service_users` for the services among ``components`` (the runner's
    multi-process start), reported on ``console``; ``{}`` when opted out."""
    if opted_out(os.environ):
        console.status("bus users", "shared", f"{OPT_OUT}=shared: every service connects "
                       "as AMQP_URL's user", "yellow")
        return {}
    from healthflow.common.topology import SERVICES

    services = sorted({c.package for c in components} & set(SERVICES))
    started = time.monotonic()
    urls = await asyncio.to_thread(ensure_service_users, amqp_url, var_dir, services)
    console.status("bus users", "ready", f"{len(urls)} RabbitMQ users healthflow-* "
                   f"({time.monotonic() - started:.1f} s)", "green")
    return urls


def delete_users_erlang(vhost: str) -> str:
    """An Erlang expression (``rabbitmqctl eval``) deleting ``vhost`` and its services' users."""
    names = ", ".join(f'<<"{busaccess.user_name(n, vhost)}">>' for n in busaccess.load())
    return (f'rabbit_vhost:delete(<<"{vhost}">>, <<"healthflow-devkit">>), '
            f'[catch rabbit_auth_backend_internal:delete_user(U, <<"healthflow-devkit">>) '
            f"|| U <- [{names}]], ok.")
