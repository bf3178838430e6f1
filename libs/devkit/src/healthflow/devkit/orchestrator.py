"""The local platform runner behind ``make run`` (``healthflow-run``).

``python -m healthflow.devkit.orchestrator [--check] [--only auth,audit]
[--single-process | --multi-process]`` starts, in order:

1. **MongoDB** — SecantusDB (:class:`~healthflow.devkit.embedded.EmbeddedMongo`)
   as a child process, data under ``<var>/mongo`` (kept across restarts), log in
   ``<var>/log/mongo.log``, started again on the same port and data whenever it
   dies; skipped when ``MONGODB_URL`` is set. Then **S3** — s3rver
   (:class:`~healthflow.devkit.embedded.EmbeddedS3`), objects under ``<var>/s3``
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
:mod:`healthflow.devkit.local_admin`), prints where the gateway, the API docs,
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
mailbox (:mod:`healthflow.devkit.mailbox`: an SMTP server and a Twilio-compatible
SMS endpoint on loopback, ``NOTIFICATION_SMTP_PORT``/8025 and
``HEALTHFLOW_MAILBOX_SMS_PORT``/8026 or free ports
when taken) and points the notification service at it (the service itself never
starts a stand-in: it talks to the endpoints it is given); what arrives is kept in
``<var>/mailbox/{mail,sms}.jsonl`` and shown at ``http://127.0.0.1:8027/mail`` and
``/sms`` (``HEALTHFLOW_MAILBOX_PORT``). Likewise localstripe for the payment service
and Janus for the teleconference service (:mod:`healthflow.devkit.standins`).

Flags and environment variables: :mod:`healthflow.devkit.config`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from healthflow.common.topology import SERVICES
from healthflow.devkit import bususers, local_admin, standins
from healthflow.devkit.config import Config, load_dotenv_defaults, parse_args, redact
from healthflow.devkit.console import Console
from healthflow.devkit.discovery import HOST, Component, app_factory, discover
from healthflow.devkit.embedded import (
    EmbeddedMongo,
    EmbeddedS3,
    EmbeddedStripe,
    free_port,
    port_open,
)
from healthflow.devkit.janus import EmbeddedJanus
from healthflow.devkit.local_admin import AdminCredentials, FirstAdminError
from healthflow.devkit.probes import (
    Readiness,
    find_broker,
    ping_mongo,
    print_readiness,
    summarize,
    wait_ready,
)
from healthflow.devkit.supervisor import (
    Supervised,
    _EmbeddedServer,
    _log_to_file,
    platform_env,
    watch_mongo,
)

DEFAULT_S3_PORT = 9000
MAILBOX_PORTS = {"smtp": 8025, "twilio": 8026, "view": 8027}  # defaults of the local mailbox


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
        self.stripe: EmbeddedStripe | None = None
        self.janus: EmbeddedJanus | None = None
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
        twilio = port(os.environ.get("HEALTHFLOW_MAILBOX_SMS_PORT"), MAILBOX_PORTS["twilio"])
        view = port(os.environ.get("HEALTHFLOW_MAILBOX_PORT"), MAILBOX_PORTS["view"])
        os.environ.update({"NOTIFICATION_SMTP_HOST": HOST, "NOTIFICATION_SMTP_PORT": str(smtp),
                           "NOTIFICATION_TWILIO_BASE_URL": f"http://{HOST}:{twilio}"})
        component = Component("mailbox", view, "devkit.mailbox")
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
            # `make demo` reads where the view is (it moves off 8027 when that is taken)
            where = self.config.var_dir / "mailbox"
            where.mkdir(parents=True, exist_ok=True)
            (where / "url").write_text(component.url + "\n")
        else:
            self.console.status("mailbox", "not ready", summarize(result.body), "red")

    async def _start_stripe(self) -> None:
        """Start localstripe for the payment service (unless it is given a Stripe)."""
        if any(c.package == "payment" for c in self.components):
            self.stripe = await standins.start_stripe(self.components, self.config,
                                                      self.console)

    async def _start_janus(self) -> None:
        """Start Janus for the teleconference service (unless it is given one)."""
        if any(c.package == "teleconference" for c in self.components):
            self.janus = await standins.start_janus(self.config, self.console)

    async def _start_multi(self) -> None:
        env = platform_env(self.config, self.mongodb_url, "rabbitmq", self.components)
        os.environ.update(env)
        # The first admin's password stays with the runner; no service needs it.
        child_env = {k: v for k, v in os.environ.items() if k != "HEALTHFLOW_ADMIN_PASSWORD"}
        bus_urls = await bususers.for_platform(  # each service's own RabbitMQ user
            self.config.amqp_url, self.config.var_dir, self.components, self.console)
        for component in self.components:
            log_file = self.config.log_dir / f"{component.name}.log"
            own_port = {"PORT": str(component.port),
                        f"{component.package.upper()}_PORT": str(component.port)}
            if component.name != component.package and component.package in SERVICES:
                # an extra replica: its listeners on free ports (the first keeps the known)
                listeners = SERVICES[component.package].listener_env()
                own_port |= {key: "0" for key in listeners}
            if component.package in bus_urls:
                own_port["AMQP_URL"] = bus_urls[component.package]
                own_port["AMQP_PLATFORM_TOPOLOGY"] = "true"  # bususers declared it
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
                        await local_admin.create_first_admin(self.admin, self.console)
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
        if self.stripe is not None:
            await asyncio.to_thread(self.stripe.stop)
        if self.janus is not None:
            await asyncio.to_thread(self.janus.stop)
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
                await self._start_stripe()
                await self._start_janus()
                if self.mode == "multi":
                    await self._start_multi()
                else:
                    await self._start_single()
                ready = await self._wait_ready()
            if self.config.check:
                print_readiness(self.console, self.components, self.report, self.skipped)
            elif ready:
                self._banner()
                watchdog = asyncio.create_task(
                    watch_mongo(self.mongo, self.stop_requested, self.console),
                    name="watch-mongo")
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
