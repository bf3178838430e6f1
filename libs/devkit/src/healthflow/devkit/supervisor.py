"""Children of the runner: each component as a supervised process (multi-process), or
as a uvicorn server in the runner's own loop (single-process), and their environment;
the watch that restarts the embedded SecantusDB when it dies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from healthflow.common.http import EX_CONFIG, uvicorn_options
from healthflow.common.topology import SERVICES
from healthflow.devkit.config import Config
from healthflow.devkit.console import Console
from healthflow.devkit.discovery import HOST, Component
from healthflow.devkit.embedded import EmbeddedMongo, free_port, port_open
from healthflow.devkit.probes import summarize, wait_ready
from healthflow.devkit.restart import Backoff

JWKS_PATH = "/.well-known/jwks.json"
KEK_FILE = "secrets/key-encryption-keys"  # under the var directory, mode 0600
INTERNAL_KEY_FILE = "secrets/internal-service-key"  # the same
MONGO_WATCH_INTERVAL = 1.0  # seconds between two checks that the embedded SecantusDB lives


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
        # the address clients reach the platform at (printed in documents, e.g. the
        # prescription's verification URL); never taken from a request's Host header
        "PUBLIC_BASE_URL": f"http://{HOST}:{config.ports['gateway']}",
        # local runs only: checkpoints signed by a key kept in the audit database
        # (a deployment gives AUDIT_CHECKPOINT_SIGNING_KEY from a secret)
        "AUDIT_ALLOW_GENERATED_SIGNING_KEY": "true",
        # local runs: no role must log in with a second factor (the first admin, the demo
        # and the e2e suite sign in with a password), unless the variable says otherwise;
        # deployments keep the service's default (admin, compliance officer, doctor)
        "AUTH_MFA_REQUIRED_ROLES": os.environ.get("AUTH_MFA_REQUIRED_ROLES", "[]"),
        # local runs: the demo and e2e accounts never open their welcome mail, so
        # reminders go to unverified addresses unless the variable says otherwise
        "NOTIFICATION_REQUIRE_VERIFIED_EMAIL": os.environ.get(
            "NOTIFICATION_REQUIRE_VERIFIED_EMAIL", "false"),
        # and they never type an SMS code: reminders go to unverified numbers too
        "NOTIFICATION_REQUIRE_VERIFIED_PHONE": os.environ.get(
            "NOTIFICATION_REQUIRE_VERIFIED_PHONE", "false"),
    }
    if not (os.environ.get("KEY_ENCRYPTION_KEYS") or os.environ.get("KEY_ENCRYPTION_KEYS_FILE")):
        # local runs: the stored secrets (auth's signing and TOTP keys, the VAPID key,
        # audit's generated checkpoint key) are wrapped with a KEK generated once and
        # kept beside the local database
        env["KEY_ENCRYPTION_KEYS_FILE"] = str(local_kek_file(config.var_dir))
    if not (os.environ.get("INTERNAL_SERVICE_KEY")
            or os.environ.get("INTERNAL_SERVICE_KEY_FILE")):
        # local runs: the services prove themselves to auth's /internal routes with a key
        # generated once and kept beside the local database, not the built-in one
        env["INTERNAL_SERVICE_KEY_FILE"] = str(local_internal_key_file(config.var_dir))
    called = {callee for manifest in SERVICES.values() for callee in manifest.calls}
    for name, port in config.ports.items():
        env[f"{name.upper()}_PORT"] = str(port)
        if name != "gateway":  # the gateway's upstreams follow moved ports and replicas
            urls = [c.url for c in components if c.package == name] or [f"http://{HOST}:{port}"]
            env[f"GATEWAY_UPSTREAM_{name.upper()}"] = ",".join(urls)
            if name in called:  # a service's synchronous callers (manifest ``calls``)
                env[f"{name.upper()}_URL"] = urls[0]
    env.update(listener_ports({c.package for c in components}))
    # The gateway is ready when the services that run are (not the skipped ones).
    env["GATEWAY_READINESS_REQUIRES"] = json.dumps(
        sorted({c.package for c in components if not c.is_gateway})
    )
    return env


def local_kek_file(var_dir: Path) -> Path:
    """``<var>/secrets/key-encryption-keys`` (0600): one KEK ``local-<date>:<key>``,
    generated on the first run and kept, as the local database is
    (:mod:`healthflow.common.keywrap`)."""
    from datetime import UTC, datetime

    from healthflow.common.keywrap import new_kek

    return _kept_secret(var_dir / KEK_FILE, lambda: f"local-{datetime.now(UTC):%Y%m%d}:{new_kek()}")


def local_internal_key_file(var_dir: Path) -> Path:
    """``<var>/secrets/internal-service-key`` (0600): the ``INTERNAL_SERVICE_KEY`` of local
    runs (:mod:`healthflow.common.servicecredentials`), generated once and kept."""
    import secrets

    return _kept_secret(var_dir / INTERNAL_KEY_FILE, lambda: secrets.token_urlsafe(32))


def _kept_secret(path: Path, make: Callable[[], str]) -> Path:
    """``path``, holding ``make()`` and a newline written once (mode 0600), then kept."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(make() + "\n")
    return path


def listener_ports(packages: set[str]) -> dict[str, str]:
    """``<NAME>_<LISTENER>_PORT`` of each running service's listeners (its manifest's
    ``listeners``, e.g. xray's DICOM port): as set in the environment, else the default,
    or a free port when the default is taken (like the mailbox's ports)."""
    from healthflow.common.topology import SERVICES

    env: dict[str, str] = {}
    for name in sorted(packages & set(SERVICES)):
        for key, default in SERVICES[name].listener_env().items():
            wanted = os.environ.get(key)
            if wanted:
                env[key] = wanted
            else:
                env[key] = str(free_port() if port_open(HOST, default, 0.2) else default)
    return env


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
        backoff = Backoff()
        name = self.component.name
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self.process = await self._spawn()
            except OSError as exc:
                delay = backoff.next_delay()
                self.console.status(name, "failed", f"cannot start: {exc}; retry in "
                                    f"{delay:.0f} s", "red")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
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
            if code == EX_CONFIG:  # its configuration was refused: a restart cannot help
                self.console.status(name, "refused", "its configuration was refused, not "
                                    f"restarted — {_last_line(self.log_file)}", "red")
                return
            delay = backoff.next_delay(uptime)
            self.restarts += 1
            self.console.status(
                name, "exited", f"code {code} after {uptime:.1f} s; restart #{self.restarts} in "
                f"{delay:.0f} s — {_last_line(self.log_file)}", "red")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

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


class _EmbeddedServer:
    """A ``uvicorn.Server`` that leaves signals to the runner and reports start-up failure."""

    def __init__(self, app: Any, component: Component, grace: float, log_file: Path) -> None:
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Any:  # the runner owns SIGINT/SIGTERM
                yield

        options = {**uvicorn_options(), "timeout_graceful_shutdown": int(grace)}
        config = uvicorn.Config(app, host=HOST, port=component.port, lifespan="on", **options)
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


async def watch_mongo(mongo: EmbeddedMongo | None, stop_requested: asyncio.Event,
                      console: Console) -> None:
    """Restart the embedded SecantusDB (same port, same data) whenever it exits, until
    ``stop_requested`` is set (``mongo`` None: an external database, nothing to watch).

    Without this a crashed database stayed down until someone restarted the
    whole platform; the services reconnect by themselves once it is back.
    """
    backoff = Backoff()
    while not stop_requested.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_requested.wait(), MONGO_WATCH_INTERVAL)
        if mongo is None or mongo.process is None or stop_requested.is_set():
            continue
        code = mongo.process.poll()
        if code is None:
            continue
        delay = backoff.next_delay()
        console.status("mongodb", "exited", f"code {code}; restarting on "
                       f":{mongo.port} in {delay:.0f} s", "red")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_requested.wait(), delay)
        if stop_requested.is_set():
            return
        try:
            await asyncio.to_thread(mongo.start)
        except RuntimeError as exc:
            console.status("mongodb", "failed", str(exc), "red")
            continue
        backoff.succeeded()
        console.status("mongodb", "ready", f"again, pid {mongo.process.pid}", "green")
