"""The local platform runner behind ``make run`` (``healthflow-run``).

``python -m healthflow.common.platform [--check] [--only auth,audit]
[--single-process | --multi-process]`` starts, in order:

1. **MongoDB** — SecantusDB (:class:`~healthflow.common.embedded.EmbeddedMongo`)
   as a child process, data under ``<var>/mongo`` (kept across restarts), log in
   ``<var>/log/mongo.log``, started again on the same port and data whenever it
   dies; skipped when ``MONGODB_URL`` is set. Then **S3** — s3rver
   (:class:`~healthflow.common.embedded.EmbeddedS3`), objects under ``<var>/s3``
   (kept across restarts), on ``HEALTHFLOW_S3_PORT`` (default 9000, a free port
   when taken); its ``S3_*`` variables go to every service; skipped when
   ``S3_ENDPOINT_URL`` is set.
2. **The services and the gateway**, in one of two shapes:

   * *multi-process* (the production shape, chosen when RabbitMQ answers at
     ``AMQP_URL``; a stopped local RabbitMQ is started first): each service and
     the gateway is its own ``python -m healthflow.<name>`` child with
     ``TRANSPORT=rabbitmq``, its JSON log lines in ``<var>/log/<name>.log``,
     restarted with exponential back-off (1 s doubling to 30 s) when it dies;
   * *single-process* (no broker): every service app and the gateway in this
     process — one asyncio loop, one ``uvicorn.Server`` per port, all services
     sharing one :class:`~healthflow.common.events.inprocess.InProcessTransport`
     (``TRANSPORT=inprocess``); logs in ``<var>/log/platform.log``.

Which services run: those of :data:`healthflow.common.topology.SERVICES` whose
package is installed and has ``app.create_app`` and ``__main__`` (the others are
named as skipped), narrowed by ``--only``. The runner waits until every
``/readyz`` answers 200, creates the first admin (from
``HEALTHFLOW_ADMIN_EMAIL``/``HEALTHFLOW_ADMIN_PASSWORD``, or on the embedded
database a generated one whose password is kept in ``<var>/first-admin.env``:
:mod:`healthflow.common.local_admin`), prints where the gateway, the API docs,
the logs and the data are, and runs until Ctrl-C or SIGTERM: the gateway stops
first, then the services (SIGTERM, SIGKILL after the grace period), MongoDB
last; the exit code is then 0. ``--check`` (or the ``check`` command) stops
right after the readiness report instead, with exit code 0 when everything was
ready and 1 otherwise. A first admin that cannot be created (a password the
policy refuses) stops the run with exit code 2 and the rule it broke.

``--replicas appointment=2`` runs more than one process of a service in
multi-process mode (the extra ones on free ports; the gateway takes them in turn).

When the notification service runs and neither ``NOTIFICATION_SMTP_HOST`` nor
``NOTIFICATION_TWILIO_BASE_URL`` is set, the runner also supervises the local
mailbox (:mod:`healthflow.notification.mailbox`: an SMTP server and a Twilio-compatible
SMS endpoint on loopback, ``NOTIFICATION_SMTP_PORT``/8025 and 8026 or free ports
when taken) and points the notification service at it; what arrives is kept in
``<var>/mailbox/{mail,sms}.jsonl`` and shown at ``http://127.0.0.1:8027/mail`` and
``/sms`` (``HEALTHFLOW_MAILBOX_PORT``).

Environment (flags win over variables): ``MONGODB_URL``, ``AMQP_URL``,
``S3_ENDPOINT_URL``, ``HEALTHFLOW_VAR_DIR`` (default ``./var``), ``HEALTHFLOW_MONGO_PORT``
(embedded SecantusDB, default 27017 or a free port when taken),
``GATEWAY_PORT`` and ``<NAME>_PORT`` (e.g. ``AUTH_PORT``) to move any port,
``HEALTHFLOW_READY_TIMEOUT`` (seconds, default 120), ``HEALTHFLOW_ADMIN_EMAIL``
and ``HEALTHFLOW_ADMIN_PASSWORD``, ``LOG_LEVEL``, ``NO_COLOR``. A ``.env`` file
in the working directory is read first (without overriding the environment).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit, urlunsplit

import httpx

from healthflow.common import local_admin
from healthflow.common.embedded import (
    EmbeddedMongo,
    EmbeddedS3,
    ensure_rabbitmq,
    free_port,
    port_open,
)
from healthflow.common.local_admin import AdminCredentials, FirstAdminError, ensure_admin
from healthflow.common.topology import GATEWAY_PORT, SERVICES

Mode = Literal["auto", "single", "multi"]

HOST = "127.0.0.1"
JWKS_PATH = "/.well-known/jwks.json"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_MONGO_PORT = 27017
DEFAULT_S3_PORT = 9000
RESTART_BACKOFF_INITIAL = 1.0  # seconds before the first restart of a dead child
RESTART_BACKOFF_MAX = 30.0  # seconds, the cap of the doubling back-off
RESTART_BACKOFF_RESET = 60.0  # seconds of uptime after which the back-off starts over
READY_POLL_INTERVAL = 0.25  # seconds between two /readyz probes
MAILBOX_PORTS = {"smtp": 8025, "twilio": 8026, "view": 8027}  # defaults of the local mailbox
MONGO_WATCH_INTERVAL = 1.0  # seconds between two checks that the embedded SecantusDB lives


# --------------------------------------------------------------------------- console


class Console:
    """Short status lines on stdout, coloured when stdout is a terminal (and no ``NO_COLOR``)."""

    COLORS = {"green": "32", "yellow": "33", "red": "31", "cyan": "36", "dim": "2", "bold": "1"}

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.color = self.stream.isatty() and not os.environ.get("NO_COLOR")

    def paint(self, text: str, color: str) -> str:
        if not self.color or color not in self.COLORS:
            return text
        return f"\033[{self.COLORS[color]}m{text}\033[0m"

    def line(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def status(self, name: str, state: str, detail: str = "", color: str = "") -> None:
        """``  auth         ready      http://127.0.0.1:8101``: one line per event."""
        self.line(f"  {name:<12} {self.paint(f'{state:<10}', color)} {detail}".rstrip())


# --------------------------------------------------------------------------- components


@dataclass(frozen=True)
class Component:
    """One process part of the platform: a service (replica) or the gateway, on ``HOST:port``.

    ``name`` is what the console and the log file show (``appointment-2`` for a
    second replica); ``service`` is the package it runs (``appointment``).
    """

    name: str
    port: int
    service: str = ""

    @property
    def package(self) -> str:
        return self.service or self.name

    @property
    def module(self) -> str:
        return f"healthflow.{self.package}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def is_gateway(self) -> bool:
        return self.name == "gateway"


def _find_spec(name: str) -> Any:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def app_factory(name: str) -> Callable[..., Any]:
    """``healthflow.<name>.app.create_app`` (or ``healthflow.<name>.create_app``).

    Raises:
        LookupError: the package is not installed or has no ``create_app`` yet.
    """
    module = f"healthflow.{name}"
    if _find_spec(module) is None:
        raise LookupError("not installed")
    for candidate in (f"{module}.app", module):
        if candidate != module and _find_spec(candidate) is None:
            continue
        try:
            loaded = importlib.import_module(candidate)
        except Exception as exc:
            raise LookupError(f"{candidate} does not import: {type(exc).__name__}: {exc}") from exc
        factory = getattr(loaded, "create_app", None)
        if callable(factory):
            found: Callable[..., Any] = factory
            return found
    raise LookupError("not built yet (no app.create_app)")


def discover(only: Sequence[str] | None, *, gateway: bool, ports: Mapping[str, int],
             replicas: Mapping[str, int] | None = None,
             ) -> tuple[list[Component], list[tuple[str, str]]]:
    """The components to run and the ``(name, reason)`` of those skipped.

    ``replicas`` asks for more than one process of a service (``{"appointment": 2}``);
    the extra ones listen on free ports and share the service's database and queue.

    Raises:
        SystemExit: ``only`` names a service that :data:`SERVICES` does not know.
    """
    wanted = list(SERVICES) if not only else list(only)
    unknown = [n for n in wanted if n not in SERVICES and n != "gateway"]
    if unknown:
        raise SystemExit(f"unknown service(s) in --only: {', '.join(unknown)} "
                         f"(known: {', '.join(SERVICES)})")
    names = [n for n in SERVICES if n in wanted]
    if gateway:
        names.append("gateway")
    chosen: list[Component] = []
    skipped: list[tuple[str, str]] = []
    for name in names:
        try:
            app_factory(name)
        except LookupError as exc:
            skipped.append((name, str(exc)))
            continue
        if _find_spec(f"healthflow.{name}.__main__") is None:
            skipped.append((name, "not built yet (no __main__)"))
            continue
        chosen.append(Component(name, ports[name], name))
        for number in range(2, (replicas or {}).get(name, 1) + 1):
            chosen.append(Component(f"{name}-{number}", free_port(), name))
    return chosen, skipped


def resolve_ports(overrides: Mapping[str, int], env: Mapping[str, str]) -> dict[str, int]:
    """Port of every component: ``--port NAME=PORT``, then ``<NAME>_PORT``, then the topology."""
    defaults = {name: info.port for name, info in SERVICES.items()} | {"gateway": GATEWAY_PORT}
    ports: dict[str, int] = {}
    for name, default in defaults.items():
        value: int | str = overrides.get(name) or env.get(f"{name.upper()}_PORT") or default
        try:
            ports[name] = int(value)
        except ValueError:
            raise SystemExit(f"{name.upper()}_PORT must be a port number, not {value!r}") from None
    return ports


# --------------------------------------------------------------------------- configuration


@dataclass
class Config:
    """What one run of the platform does (from flags and the environment)."""

    var_dir: Path
    mongodb_url: str | None
    mongo_port: int
    amqp_url: str
    mode: Mode
    only: list[str] | None
    gateway: bool
    ports: dict[str, int]
    ready_timeout: float  # seconds
    grace: float  # seconds between SIGTERM and SIGKILL
    check: bool
    admin_email: str | None = None
    admin_password: str | None = field(default=None, repr=False)
    replicas: dict[str, int] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"


def _port_pair(text: str) -> tuple[str, int]:
    name, sep, port = text.partition("=")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=PORT, got {text!r}")
    return name.strip(), int(port)


def parse_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> Config:
    parser = argparse.ArgumentParser(
        prog="healthflow-run",
        description="Run the HealthFlow platform locally (gateway on http://127.0.0.1:8000).",
    )
    parser.add_argument("command", nargs="?", choices=["run", "check"], default="run",
                        help="run (default) or check: start, report readiness, stop, exit 0/1")
    parser.add_argument("--check", action="store_true", help="same as the check command")
    parser.add_argument("--only", help="comma-separated services to run, e.g. auth,audit")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--single-process", dest="mode", action="store_const", const="single",
                       help="every service in this process over the in-process transport")
    group.add_argument("--multi-process", dest="mode", action="store_const", const="multi",
                       help="each service its own process over RabbitMQ (fails without it)")
    parser.add_argument("--no-gateway", dest="gateway", action="store_false",
                        help="run the services only")
    parser.add_argument("--port", action="append", type=_port_pair, default=[],
                        metavar="NAME=PORT", help="move one component (repeatable)")
    parser.add_argument("--replicas", action="append", type=_port_pair, default=[],
                        metavar="NAME=N",
                        help="run N processes of a service (multi-process mode; repeatable)")
    parser.add_argument("--var-dir", default=env.get("HEALTHFLOW_VAR_DIR", "var"),
                        help="data and logs (default ./var; HEALTHFLOW_VAR_DIR)")
    parser.add_argument("--mongo-port", type=int,
                        default=int(env.get("HEALTHFLOW_MONGO_PORT", DEFAULT_MONGO_PORT)),
                        help="port of the embedded SecantusDB (HEALTHFLOW_MONGO_PORT)")
    parser.add_argument("--ready-timeout", type=float,
                        default=float(env.get("HEALTHFLOW_READY_TIMEOUT", "120")),
                        help="seconds to wait for every /readyz (HEALTHFLOW_READY_TIMEOUT)")
    parser.add_argument("--grace", type=float, default=20.0,
                        help="seconds a stopping child gets before SIGKILL")
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    return Config(
        var_dir=Path(args.var_dir),
        mongodb_url=env.get("MONGODB_URL") or None,
        mongo_port=args.mongo_port,
        amqp_url=env.get("AMQP_URL") or DEFAULT_AMQP_URL,
        mode=args.mode or "auto",
        only=only,
        gateway=args.gateway,
        ports=resolve_ports(dict(args.port), env),
        ready_timeout=args.ready_timeout,
        grace=args.grace,
        check=args.check or args.command == "check",
        admin_email=env.get("HEALTHFLOW_ADMIN_EMAIL") or None,
        admin_password=env.get("HEALTHFLOW_ADMIN_PASSWORD") or None,
        replicas=dict(args.replicas),
    )


def redact(url: str) -> str:
    """``url`` without its password (safe to print)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def load_dotenv_defaults(path: Path = Path(".env")) -> None:
    """Put the ``.env`` file's variables into ``os.environ`` where not already set."""
    if not path.is_file():
        return
    from dotenv import dotenv_values

    for key, value in dotenv_values(path).items():
        if value is not None:
            os.environ.setdefault(key, value)


# --------------------------------------------------------------------------- broker


async def amqp_answers(url: str, within: float = 5.0) -> bool:
    """True when a broker accepts a connection (credentials, vhost) at ``url`` in ``within`` s."""
    import aio_pika

    try:
        connection = await asyncio.wait_for(aio_pika.connect(url, timeout=within), within)
    except Exception:
        return False
    with contextlib.suppress(Exception):
        await connection.close()
    return True


async def find_broker(config: Config, console: Console) -> bool:
    """Whether RabbitMQ answers at ``AMQP_URL``; starts the local one when it is installed."""
    parts = urlsplit(config.amqp_url)
    host, port = parts.hostname or HOST, parts.port or 5672
    local = host in ("127.0.0.1", "localhost", "::1")
    if local and not port_open(host, port):
        import shutil

        if shutil.which("rabbitmq-server") is None:
            return False
        console.status("rabbitmq", "starting", "the installed rabbitmq-server", "yellow")
        try:
            await asyncio.to_thread(ensure_rabbitmq, host, port)
        except RuntimeError as exc:
            console.status("rabbitmq", "failed", str(exc), "red")
            return False
    return await amqp_answers(config.amqp_url)


def ping_mongo(url: str, within: float = 10.0) -> None:
    """Make sure a MongoDB server answers at ``url`` within ``within`` seconds.

    Raises:
        RuntimeError: naming ``MONGODB_URL`` and what the driver saw.
    """
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(
        url, serverSelectionTimeoutMS=int(within * 1000))
    try:
        client.admin.command("ping")
    except Exception as exc:
        raise RuntimeError(f"MongoDB at MONGODB_URL={redact(url)} does not answer "
                           f"({type(exc).__name__}); start it or unset MONGODB_URL "
                           "to use the embedded SecantusDB") from None
    finally:
        client.close()


# --------------------------------------------------------------------------- readiness


@dataclass
class Readiness:
    ready: bool
    status: int | None  # HTTP status of the last probe; None when nothing answered
    body: Any = None
    seconds: float = 0.0  # from the start of waiting until ready (or the timeout)


async def wait_ready(component: Component, deadline: float,
                     alive: Callable[[], bool] = lambda: True,
                     failed: Callable[[], str | None] = lambda: None) -> Readiness:
    """Probe ``/readyz`` (``/livez`` when there is none) until 200 or ``deadline`` (monotonic).

    ``alive`` false skips a probe (a child waiting to be restarted); ``failed``
    returning a reason ends the wait at once (a part that will not come back).
    """
    started = time.monotonic()
    last = Readiness(False, None)
    path = "/readyz"
    async with httpx.AsyncClient(base_url=component.url, timeout=5.0) as client:
        while True:
            reason = failed()
            if reason is not None:
                return Readiness(False, None, reason, time.monotonic() - started)
            if alive():
                try:
                    response = await client.get(path)
                    body: Any
                    try:
                        body = response.json()
                    except ValueError:
                        body = response.text[:200]
                    last = Readiness(response.status_code == 200, response.status_code, body)
                    if response.status_code == 404 and path == "/readyz":
                        path = "/livez"
                        continue
                except httpx.HTTPError as exc:
                    last = Readiness(False, None, type(exc).__name__)
            if last.ready or time.monotonic() >= deadline:
                last.seconds = time.monotonic() - started
                return last
            await asyncio.sleep(READY_POLL_INTERVAL)


def summarize(body: Any) -> str:
    """One short line from a ``/readyz`` body: the failing checks, or ``ok``."""
    if isinstance(body, dict) and isinstance(body.get("checks"), dict):
        bad = [f"{k}={v}" for k, v in body["checks"].items()
               if v not in ("ok", "attached", True) and not isinstance(v, dict)]
        return ", ".join(bad) if bad else "all checks ok"
    return str(body)[:120] if body is not None else "no answer"


# --------------------------------------------------------------------------- environment


def platform_env(config: Config, mongodb_url: str, transport: str,
                 components: Sequence[Component]) -> dict[str, str]:
    """The variables every component is started with (on top of the inherited environment)."""
    auth_port = config.ports["auth"]
    env = {
        "MONGODB_URL": mongodb_url,
        "AMQP_URL": config.amqp_url,
        "TRANSPORT": transport,
        "JWKS_URL": f"http://{HOST}:{auth_port}{JWKS_PATH}",
        "HOST": HOST,
    }
    for name, port in config.ports.items():
        env[f"{name.upper()}_PORT"] = str(port)
        if name != "gateway":  # the gateway's upstreams follow moved ports and replicas
            urls = [c.url for c in components if c.package == name] or [f"http://{HOST}:{port}"]
            env[f"GATEWAY_UPSTREAM_{name.upper()}"] = ",".join(urls)
    # The gateway is ready when the services that run are (not the skipped ones).
    env["GATEWAY_READINESS_REQUIRES"] = json.dumps(
        sorted({c.package for c in components if not c.is_gateway})
    )
    return env


# --------------------------------------------------------------------------- first admin


async def create_first_admin(credentials: AdminCredentials, console: Console) -> None:
    """Create the first admin (unless it exists) and say where its password is kept.

    Raises:
        FirstAdminError: the auth service refused the address or the password.
    """
    user_id = await ensure_admin(credentials)
    if credentials.source == local_admin.PASSWORD_ENV:
        where = f"password from {local_admin.PASSWORD_ENV}"
    else:
        where = f"password in {credentials.source} (owner-only; `make demo` reads it)"
    console.status("admin", "ok", f"first admin {credentials.email} (user id {user_id}); "
                   f"{where}", "green")


# --------------------------------------------------------------------------- multi-process


class Supervised:
    """One component as a child process, restarted with back-off until :meth:`stop`."""

    def __init__(self, component: Component, env: Mapping[str, str], log_file: Path,
                 console: Console, grace: float, ready_timeout: float) -> None:
        self.component = component
        self.env = dict(env)
        self.log_file = log_file
        self.console = console
        self.grace = grace  # seconds from SIGTERM to SIGKILL
        self.ready_timeout = ready_timeout  # seconds a restarted child has to become ready
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def kill(self) -> None:
        """SIGKILL the child's process group now (a second Ctrl-C)."""
        self._stopping.set()
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"supervise-{self.component.name}")

    async def _spawn(self) -> asyncio.subprocess.Process:
        out = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.component.module,
                env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )
        finally:
            os.close(out)

    async def _run(self) -> None:
        backoff = RESTART_BACKOFF_INITIAL
        name = self.component.name
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self.process = await self._spawn()
            except OSError as exc:
                self.console.status(name, "failed", f"cannot start: {exc}; retry in "
                                    f"{backoff:.0f} s", "red")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, RESTART_BACKOFF_MAX)
                continue
            self.console.status(name, "started", f"pid {self.process.pid}  :{self.component.port}"
                                f"  log {self.log_file}", "yellow")
            if self.restarts:
                self._probe = asyncio.create_task(self._announce_ready())
            waiter = asyncio.ensure_future(self.process.wait())
            stopper = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if self._probe is not None:
                self._probe.cancel()
            if self._stopping.is_set():
                await self._terminate(self.process)
                waiter.cancel()
                return
            code = waiter.result()
            uptime = time.monotonic() - started
            if uptime >= RESTART_BACKOFF_RESET:
                backoff = RESTART_BACKOFF_INITIAL
            self.restarts += 1
            self.console.status(
                name, "exited", f"code {code} after {uptime:.1f} s; restart #{self.restarts} in "
                f"{backoff:.0f} s — {_last_line(self.log_file)}", "red")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX)

    async def _announce_ready(self) -> None:
        """After a restart: say when the child is ready again (or that it is not)."""
        result = await wait_ready(self.component, time.monotonic() + self.ready_timeout,
                                  self.alive)
        if result.ready:
            self.console.status(self.component.name, "ready", f"{self.component.url}  again "
                                f"after restart #{self.restarts} ({result.seconds:.1f} s)",
                                "green")
        elif self.alive():
            self.console.status(self.component.name, "not ready", summarize(result.body), "red")

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        """SIGTERM to the child's process group, SIGKILL after ``grace`` seconds."""
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.grace)
        except TimeoutError:
            self.console.status(self.component.name, "killed",
                                f"no exit {self.grace:.0f} s after SIGTERM", "red")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
        self.console.status(self.component.name, "stopped", "", "dim")


def _last_line(path: Path, limit: int = 160) -> str:
    """The last non-empty line of ``path`` (a child's log), shortened to ``limit`` characters."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            lines = [ln for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return (lines[-1][:limit] if lines else "empty log") + f" ({path})"


# --------------------------------------------------------------------------- single-process


class _EmbeddedServer:
    """A ``uvicorn.Server`` that leaves signals to the runner and reports start-up failure."""

    def __init__(self, app: Any, component: Component, grace: float, log_file: Path) -> None:
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Any:  # the runner owns SIGINT/SIGTERM
                yield

        config = uvicorn.Config(
            app, host=HOST, port=component.port, log_config=None, access_log=False,
            lifespan="on", timeout_graceful_shutdown=int(grace),
        )
        self.server = _Server(config)
        self.component = component
        self.log_file = log_file
        self.failed: str | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._serve(), name=f"serve-{self.component.name}")

    async def _serve(self) -> None:
        try:
            await self.server.serve()
        except SystemExit as exc:  # uvicorn exits when the lifespan or the bind fails
            self.failed = f"start-up failed (exit {exc.code}); see {self.log_file}"
        except Exception as exc:
            self.failed = f"{type(exc).__name__}: {exc}"

    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


def _log_to_file(path: Path, level: str) -> None:
    """Point this process's JSON log lines (set up by the apps) at ``path``."""
    from healthflow.common.logs import setup_logging

    setup_logging("platform", level)
    stream = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives as long as the process
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_healthflow", False) and isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)


# --------------------------------------------------------------------------- the run


class Platform:
    """One run: database, components, readiness, then wait for a stop signal."""

    def __init__(self, config: Config, console: Console) -> None:
        self.config = config
        self.console = console
        self.stop_requested = asyncio.Event()
        self.mongo: EmbeddedMongo | None = None
        self.mongodb_url = config.mongodb_url or ""
        self.s3: EmbeddedS3 | None = None
        self.components: list[Component] = []
        self.skipped: list[tuple[str, str]] = []
        self.mode: Literal["single", "multi"] = "single"
        self.children: dict[str, Supervised] = {}
        self.servers: dict[str, _EmbeddedServer] = {}
        self.transport: Any = None
        self.report: dict[str, Readiness] = {}
        self.mailbox: Supervised | None = None
        self.admin: AdminCredentials | None = None
        self.fatal: str | None = None  # why the run stopped itself (exit code 2)

    # ----- steps

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        if self.stop_requested.is_set():  # a second Ctrl-C: no more grace
            self.console.line(self.console.paint("stopping now (SIGKILL)…", "red"))
            for child in self.children.values():
                child.kill()
            for server in self.servers.values():
                server.server.force_exit = True
            return
        self.console.line()
        self.console.line(self.console.paint(
            f"{signal.Signals(sig).name}: stopping HealthFlow…", "yellow"))
        self.stop_requested.set()

    def _stop_fatally(self, reason: str) -> None:
        self.fatal = reason
        self.console.status("admin", "failed", reason, "red")
        self.stop_requested.set()

    def _choose_admin(self) -> None:
        """The first admin this run creates (checked against the password policy now, so a
        refused one stops the run before anything starts)."""
        if not any(c.name == "auth" for c in self.components):
            return
        self.admin = local_admin.choose_credentials(
            self.config.admin_email, self.config.admin_password, self.config.var_dir,
            embedded=self.config.mongodb_url is None)
        if self.admin is not None:
            local_admin.check_policy(self.admin)

    def _check_ports(self) -> None:
        busy = [f"{c.name} :{c.port}" for c in self.components if port_open(HOST, c.port, 0.2)]
        if busy:
            raise SystemExit(
                "port(s) already in use: " + ", ".join(busy)
                + " — is HealthFlow already running? Move them with --port NAME=PORT "
                "or <NAME>_PORT."
            )

    async def _start_mongo(self) -> None:
        if self.mongodb_url:
            await asyncio.to_thread(ping_mongo, self.mongodb_url)
            self.console.status("mongodb", "external", redact(self.mongodb_url), "cyan")
            return
        port = self.config.mongo_port
        if port_open(HOST, port, 0.2):
            taken, port = port, free_port()
            self.console.status("mongodb", "moved", f":{taken} is taken; using :{port} "
                                "(set HEALTHFLOW_MONGO_PORT to choose)", "yellow")
        self.mongo = EmbeddedMongo(self.config.var_dir / "mongo", port=port,
                                   log_file=self.config.log_dir / "mongo.log")
        self.console.status("mongodb", "starting", f"SecantusDB on :{port}", "yellow")
        await asyncio.to_thread(self.mongo.start)
        self.mongodb_url = self.mongo.url
        self.console.status("mongodb", "ready", f"{self.mongo.url}  data "
                            f"{self.config.var_dir / 'mongo'}", "green")

    async def _start_s3(self) -> None:
        """The embedded S3 unless ``S3_ENDPOINT_URL`` is set; its variables go to the services."""
        if external := os.environ.get("S3_ENDPOINT_URL"):
            self.console.status("s3", "external", redact(external), "cyan")
            return
        port = int(os.environ.get("HEALTHFLOW_S3_PORT") or DEFAULT_S3_PORT)
        if port_open(HOST, port, 0.2):
            taken, port = port, free_port()
            self.console.status("s3", "moved", f":{taken} is taken; using :{port} "
                                "(set HEALTHFLOW_S3_PORT to choose)", "yellow")
        s3 = EmbeddedS3(self.config.var_dir / "s3", port=port,
                        log_file=self.config.log_dir / "s3.log")
        try:
            await asyncio.to_thread(s3.start)
        except RuntimeError as exc:  # no service needs objects to start: say so and go on
            self.console.status("s3", "not started", str(exc), "red")
            return
        self.s3 = s3
        os.environ.update(s3.env())
        self.console.status("s3", "ready", f"{s3.url}  data {s3.storage}", "green")

    async def _choose_mode(self) -> None:
        mode = self.config.mode
        if mode == "single":
            self.mode = "single"
            return
        answers = await find_broker(self.config, self.console)
        if mode == "multi" and not answers:
            raise SystemExit(f"--multi-process needs RabbitMQ, and none answers at "
                             f"{redact(self.config.amqp_url)} (set AMQP_URL)")
        self.mode = "multi" if answers else "single"
        if answers:
            self.console.status("rabbitmq", "ready", redact(self.config.amqp_url), "green")
        else:
            self.console.status("rabbitmq", "absent", f"no broker accepts a connection at "
                                f"{redact(self.config.amqp_url)}: single-process mode", "dim")

    async def _start_mailbox(self) -> None:
        """Supervise the local mailbox and point the notification service at it (if wanted)."""
        if not any(c.package == "notification" for c in self.components) or any(
                os.environ.get(k) for k in ("NOTIFICATION_SMTP_HOST",
                                            "NOTIFICATION_TWILIO_BASE_URL")):
            return

        def port(wanted: str | None, default: int) -> int:
            chosen = int(wanted) if wanted else default
            return free_port() if port_open(HOST, chosen, 0.2) else chosen

        smtp = port(os.environ.get("NOTIFICATION_SMTP_PORT"), MAILBOX_PORTS["smtp"])
        twilio = port(None, MAILBOX_PORTS["twilio"])
        view = port(os.environ.get("HEALTHFLOW_MAILBOX_PORT"), MAILBOX_PORTS["view"])
        os.environ.update({"NOTIFICATION_SMTP_HOST": HOST, "NOTIFICATION_SMTP_PORT": str(smtp),
                           "NOTIFICATION_TWILIO_BASE_URL": f"http://{HOST}:{twilio}"})
        component = Component("mailbox", view, "notification.mailbox")
        env = {k: v for k, v in os.environ.items() if k != "HEALTHFLOW_ADMIN_PASSWORD"} | {
            "MAILBOX_SMTP_PORT": str(smtp), "MAILBOX_TWILIO_PORT": str(twilio),
            "MAILBOX_PORT": str(view), "MAILBOX_DIR": str(self.config.var_dir / "mailbox")}
        self.mailbox = Supervised(component, env, self.config.log_dir / "mailbox.log",
                                  self.console, self.config.grace, self.config.ready_timeout)
        self.mailbox.start()
        result = await wait_ready(component, time.monotonic() + self.config.ready_timeout,
                                  self.mailbox.alive)
        if result.ready:
            self.console.status("mailbox", "ready", f"SMTP :{smtp}, SMS :{twilio}, view "
                                f"{component.url}/mail", "green")
        else:
            self.console.status("mailbox", "not ready", summarize(result.body), "red")

    async def _start_multi(self) -> None:
        env = platform_env(self.config, self.mongodb_url, "rabbitmq", self.components)
        os.environ.update(env)
        # The first admin's password stays with the runner; no service needs it.
        child_env = {k: v for k, v in os.environ.items() if k != "HEALTHFLOW_ADMIN_PASSWORD"}
        for component in self.components:
            log_file = self.config.log_dir / f"{component.name}.log"
            own_port = {"PORT": str(component.port),
                        f"{component.package.upper()}_PORT": str(component.port)}
            child = Supervised(component, child_env | own_port, log_file,
                               self.console, self.config.grace, self.config.ready_timeout)
            self.children[component.name] = child
            child.start()

    async def _start_single(self) -> None:
        env = platform_env(self.config, self.mongodb_url, "inprocess", self.components)
        os.environ.update(env)
        from healthflow.common.service import shared_inprocess_transport

        self.transport = shared_inprocess_transport(self.mongodb_url)
        await self.transport.connect()
        await self.transport.recover()
        level = os.environ.get("LOG_LEVEL", "INFO")
        log_file = self.config.log_dir / "platform.log"
        for component in self.components:
            factory = app_factory(component.package)
            app = factory() if component.is_gateway else factory(transport=self.transport)
            self.servers[component.name] = _EmbeddedServer(app, component, self.config.grace,
                                                           log_file)
        _log_to_file(log_file, level)
        for component in self.components:
            self.servers[component.name].start()
            self.console.status(component.name, "starting", f":{component.port}", "yellow")

    def _alive(self, name: str) -> Callable[[], bool]:
        if self.mode == "multi":
            return self.children[name].alive
        return self.servers[name].alive

    def _failed(self, name: str) -> Callable[[], str | None]:
        """Why ``name`` will never be ready (single-process start-up failure), else None."""
        if self.mode == "multi":
            return lambda: None
        server = self.servers[name]
        return lambda: server.failed

    async def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.config.ready_timeout

        async def one(component: Component) -> None:
            result = await wait_ready(component, deadline, self._alive(component.name),
                                      self._failed(component.name))
            self.report[component.name] = result
            if result.ready:
                self.console.status(component.name, "ready",
                                    f"{component.url}  ({result.seconds:.1f} s)", "green")
                if component.name == "auth" and self.admin is not None:
                    try:
                        await create_first_admin(self.admin, self.console)
                    except FirstAdminError as exc:
                        self._stop_fatally(str(exc))
            else:
                self.console.status(component.name, "not ready",
                                    f"{component.url}  {summarize(result.body)}", "red")

        waiting: asyncio.Future[Any] = asyncio.gather(*(one(c) for c in self.components))
        stop: asyncio.Future[Any] = asyncio.ensure_future(self.stop_requested.wait())
        await asyncio.wait({waiting, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            stop.cancel()
            return False
        stop.cancel()
        return all(r.ready for r in self.report.values())

    async def _watch_mongo(self) -> None:
        """Restart the embedded SecantusDB (same port, same data) whenever it exits.

        Without this a crashed database stayed down until someone restarted the
        whole platform; the services reconnect by themselves once it is back.
        """
        backoff = RESTART_BACKOFF_INITIAL
        while not self.stop_requested.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), MONGO_WATCH_INTERVAL)
            mongo = self.mongo
            if mongo is None or mongo.process is None or self.stop_requested.is_set():
                continue
            code = mongo.process.poll()
            if code is None:
                continue
            self.console.status("mongodb", "exited", f"code {code}; restarting on "
                                f":{mongo.port} in {backoff:.0f} s", "red")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), backoff)
            if self.stop_requested.is_set():
                return
            try:
                await asyncio.to_thread(mongo.start)
            except RuntimeError as exc:
                self.console.status("mongodb", "failed", str(exc), "red")
                backoff = min(backoff * 2, RESTART_BACKOFF_MAX)
                continue
            backoff = RESTART_BACKOFF_INITIAL
            self.console.status("mongodb", "ready", f"again, pid {mongo.process.pid}", "green")

    def _banner(self) -> None:
        c = self.console
        gateway = next((x for x in self.components if x.is_gateway), None)
        c.line()
        shape = ("multi-process over RabbitMQ" if self.mode == "multi"
                 else "single process, in-process transport")
        c.line(c.paint(f"HealthFlow is up ({shape})", "bold"))
        if gateway is not None:
            c.line(f"  gateway   {c.paint(gateway.url, 'cyan')}")
            c.line(f"  API docs  {c.paint(gateway.url + '/docs', 'cyan')}")
        else:
            for comp in self.components:
                c.line(f"  {comp.name:<9} {comp.url}  (docs {comp.url}/docs)")
        logs = (f"{self.config.log_dir}/<name>.log" if self.mode == "multi"
                else f"{self.config.log_dir}/platform.log")
        c.line(f"  logs      {logs}  (JSON lines)")
        if self.mailbox is not None:
            view = self.mailbox.component.url
            c.line(f"  mailbox   {c.paint(view + '/mail', 'cyan')}  SMS log "
                   f"{c.paint(view + '/sms', 'cyan')}  "
                   f"(files {self.config.var_dir / 'mailbox'}/*.jsonl)")
        data = (f"{self.config.var_dir / 'mongo'}  ({self.mongodb_url})" if self.mongo
                else f"external MongoDB {redact(self.mongodb_url)}")
        c.line(f"  data      {data}")
        if self.s3 is not None:
            c.line(f"  objects   {self.s3.storage}  ({self.s3.url})")
        c.line("  Ctrl-C to stop.")

    async def _shutdown(self) -> None:
        ordered = sorted(self.components, key=lambda comp: not comp.is_gateway)
        gateway = [x for x in ordered if x.is_gateway]
        services = [x for x in ordered if not x.is_gateway]
        for group in (gateway, services):
            stops = []
            for component in group:
                if component.name in self.children:
                    stops.append(self.children[component.name].stop())
                elif component.name in self.servers:
                    stops.append(self.servers[component.name].stop())
            await asyncio.gather(*stops, return_exceptions=True)
        if self.mailbox is not None:
            await self.mailbox.stop()
        if self.servers:
            for component in self.components:
                self.console.status(component.name, "stopped", "", "dim")
        if self.transport is not None:
            with contextlib.suppress(Exception):
                await self.transport.close()
        from healthflow.common import mongo

        with contextlib.suppress(Exception):
            await mongo.close_clients()
        if self.mongo is not None:
            await asyncio.to_thread(self.mongo.stop)
            self.console.status("mongodb", "stopped", "", "dim")
        if self.s3 is not None:
            await asyncio.to_thread(self.s3.stop)
            self.console.status("s3", "stopped", "", "dim")

    async def run(self) -> int:
        """Start everything, report, then wait for a signal (or stop at once with ``check``)."""
        self._install_signals()
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        self.components, self.skipped = discover(
            self.config.only, gateway=self.config.gateway, ports=self.config.ports,
            replicas=self.config.replicas)
        self.console.line(self.console.paint("HealthFlow — local platform", "bold"))
        for name, reason in self.skipped:
            self.console.status(name, "skipped", reason, "dim")
        if not self.components:
            self.console.line("nothing to run: no service is built yet")
            return 1
        self._check_ports()
        try:
            self._choose_admin()
        except FirstAdminError as exc:
            self.console.line(self.console.paint(f"error: {exc}", "red"))
            return 2
        ready = False
        try:
            await self._start_mongo()
            if not self.stop_requested.is_set():
                await self._start_s3()
                await self._choose_mode()
                if self.mode != "multi" and any(c.name != c.package for c in self.components):
                    self.console.status("replicas", "ignored",
                                        "one process holds every service in single-process mode",
                                        "dim")
                    self.components = [c for c in self.components if c.name == c.package]
                await self._start_mailbox()
                if self.mode == "multi":
                    await self._start_multi()
                else:
                    await self._start_single()
                ready = await self._wait_ready()
            if self.config.check:
                self._print_check()
            elif ready:
                self._banner()
                watchdog = asyncio.create_task(self._watch_mongo(), name="watch-mongo")
                await self.stop_requested.wait()
                await watchdog
            elif not self.stop_requested.is_set():
                self.console.line(self.console.paint(
                    "HealthFlow is not fully ready; still running (Ctrl-C to stop).", "red"))
                await self.stop_requested.wait()
        finally:
            await self._shutdown()
        if self.fatal is not None:
            self.console.line(self.console.paint(f"error: {self.fatal}", "red"))
            return 2
        if self.config.check:
            return 0 if ready else 1
        return 0

    def _print_check(self) -> None:
        c = self.console
        c.line()
        c.line(c.paint("readiness", "bold"))
        for component in self.components:
            result = self.report.get(component.name, Readiness(False, None, "not probed"))
            state, color = ("ready", "green") if result.ready else ("NOT READY", "red")
            c.line(f"  {component.name:<12} {c.paint(f'{state:<10}', color)} "
                   f"{result.status or '-':>3}  {summarize(result.body)}")
        for name, reason in self.skipped:
            skipped = c.paint(f"{'skipped':<10}", "dim")
            c.line(f"  {name:<12} {skipped} {'-':>3}  {reason}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``healthflow-run``; returns the process exit code."""
    load_dotenv_defaults()
    config = parse_args(argv, os.environ)
    console = Console()
    try:
        return asyncio.run(Platform(config, console).run())
    except RuntimeError as exc:  # e.g. secantusd-py missing or not answering
        console.line(console.paint(f"error: {exc}", "red"))
        return 1


if __name__ == "__main__":
    sys.exit(main())
