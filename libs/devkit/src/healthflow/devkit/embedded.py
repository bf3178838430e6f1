"""Local servers as child processes: the MongoDB-protocol server, S3 and RabbitMQ.

:class:`EmbeddedMongo` runs SecantusDB (``secantusd-py``, a MongoDB-wire-protocol
server over WiredTiger) as a child process; it presents itself as a one-node
replica set, so transactions and change streams work. Used by ``make run``
(data under ``./var/mongo``) and by the test fixtures (``:memory:``).

:class:`EmbeddedS3` runs s3rver (npm, installed by ``make deps`` under
``deploy/s3rver``) as a child process: an S3-compatible server that keeps each
object as files in a directory, so ``make run`` keeps them under ``./var/s3``.

:class:`EmbeddedStripe` runs localstripe (PyPI, a fake Stripe API with PaymentIntents,
refunds and signed webhooks; GPL-3, so only ever run as its own process, never
imported) for the payment service, which reaches it through the ``stripe`` library.

:func:`ensure_rabbitmq` starts the machine's RabbitMQ when it is installed but
stopped, and raises :class:`RuntimeError` with a clear message otherwise.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pymongo import MongoClient


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports. All are held bound until every one is
    chosen: calling :func:`free_port` repeatedly can hand out the same port twice."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


class EmbeddedMongo:
    """A SecantusDB child process on loopback.

    ``storage`` is a directory (kept across restarts) or ``":memory:"``. A directory
    is opened with ``--sync-on-commit``: an acknowledged commit survives the server
    being killed (the durability of MongoDB's ``j: true``).
    """

    def __init__(self, storage: str | Path = ":memory:", port: int | None = None,
                 log_file: Path | None = None) -> None:
        self.storage = str(storage)
        self.port = port or free_port()
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def _command(self) -> list[str]:
        exe = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
        if not Path(exe).exists():
            raise RuntimeError(
                "secantusd-py is not installed: install the SecantusDB package "
                "(pip install SecantusDB) or set MONGODB_URL to a MongoDB replica set"
            )
        command = [exe, "--host", "127.0.0.1", "--port", str(self.port),
                   "--storage-path", self.storage, "--log-level", "WARNING"]
        if self.storage != ":memory:":
            # Without it SecantusDB acknowledges a commit before its log reaches the
            # file, and a SIGKILL loses the last ~100 ms of acknowledged bookings
            # (measured: 108 of 1,000 commits; with it, none, at ~10 % per commit).
            command.append("--sync-on-commit")
        return command

    def start(self, timeout: float = 60.0) -> EmbeddedMongo:
        if self.storage != ":memory:":
            Path(self.storage).mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self._command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"secantusd-py exited with code {self.process.returncode}")
            if port_open("127.0.0.1", self.port):
                with contextlib.suppress(Exception):
                    client: MongoClient[dict[str, object]] = MongoClient(
                        self.url, serverSelectionTimeoutMS=1000
                    )
                    try:
                        client.admin.command("ping")
                        return self
                    finally:
                        client.close()
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"secantusd-py did not answer on port {self.port} within {timeout} s")

    def stop(self, timeout: float = 15.0) -> None:
        stop_child(self.process, timeout)

    def kill(self) -> None:
        """Stop abruptly (fault drills)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


def find_s3rver() -> Path:
    """The s3rver executable: ``HEALTHFLOW_S3RVER``, else ``deploy/s3rver`` of the
    checkout this package or the working directory is in, else ``s3rver`` on PATH.

    Raises:
        RuntimeError: naming ``make deps`` (npm ci) and ``S3_ENDPOINT_URL``.
    """
    relative = Path("deploy/s3rver/node_modules/.bin/s3rver")
    configured = os.environ.get("HEALTHFLOW_S3RVER")
    candidates = [Path(configured)] if configured else []
    for base in [Path.cwd(), *Path(__file__).resolve().parents]:
        candidates.append(base / relative)
    if found := shutil.which("s3rver"):
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise RuntimeError(
        "s3rver is not installed: run `make deps` (npm ci in deploy/s3rver, needs Node.js) "
        "or set S3_ENDPOINT_URL to an S3 server"
    )


def spawn_listening(name: str, command: list[str], port: int, log_file: Path | None,
                    timeout: float) -> subprocess.Popen[bytes]:
    """Start ``command`` (its own session, output appended to ``log_file``) and wait up
    to ``timeout`` seconds until it listens on 127.0.0.1:``port``.

    Raises:
        RuntimeError: it exited first, or did not listen in time (it is then stopped).
    """
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}")
        if port_open("127.0.0.1", port):
            return process
        time.sleep(0.1)
    stop_child(process, 10.0)
    raise RuntimeError(f"{name} did not answer on port {port} within {timeout} s")


class EmbeddedS3:
    """An s3rver child process on loopback; objects are files under ``storage``.

    s3rver accepts the one fixed key pair :attr:`access_key`/:attr:`secret_key`
    and checks AWS Signature V4 (headers and presigned query strings).
    """

    access_key = "S3RVER"
    secret_key = "S3RVER"  # noqa: S105 - s3rver's fixed local credentials
    region = "us-east-1"

    def __init__(self, storage: str | Path, port: int | None = None,
                 log_file: Path | None = None) -> None:
        self.storage = Path(storage)
        self.port = port or free_port()
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The variables that point a service's blob store here."""
        return {"S3_ENDPOINT_URL": self.url, "S3_ACCESS_KEY": self.access_key,
                "S3_SECRET_KEY": self.secret_key, "S3_REGION": self.region}

    def start(self, timeout: float = 30.0) -> EmbeddedS3:
        self.storage.mkdir(parents=True, exist_ok=True)
        # s3rver cannot abort a multipart upload: parts of uploads that were under
        # way when it stopped (or were aborted) would stay on disk for ever.
        for leftover in self.storage.glob("*/._S3rver_uploads/*"):
            shutil.rmtree(leftover, ignore_errors=True)
        command = [str(find_s3rver()), "--directory", str(self.storage),
                   "--address", "127.0.0.1", "--port", str(self.port), "--silent"]
        self.process = spawn_listening("s3rver", command, self.port, self.log_file, timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        stop_child(self.process, timeout)


class EmbeddedStripe:
    """A localstripe child process
    (``python -m healthflow.devkit.localstripe_launcher``): the payment service's local
    Stripe on 127.0.0.1, in memory only (no ``/tmp/localstripe.pickle``), with webhooks
    signed by :attr:`webhook_secret`. Development and test machines only.
    """

    api_key = "sk_test_localstripe"  # localstripe accepts any test key

    def __init__(self, port: int | None = None, webhook_secret: str | None = None,
                 log_file: Path | None = None) -> None:
        self.port = port or free_port()
        self.webhook_secret = webhook_secret or "whsec_" + secrets.token_hex(24)
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The variables that point the payment service here."""
        return {"PAYMENT_STRIPE_API_BASE": self.url, "PAYMENT_STRIPE_API_KEY": self.api_key,
                "PAYMENT_STRIPE_WEBHOOK_SECRET": self.webhook_secret}

    def start(self, timeout: float = 30.0) -> EmbeddedStripe:
        command = [sys.executable, "-m", "healthflow.devkit.localstripe_launcher",
                   "--port", str(self.port)]
        self.process = spawn_listening("localstripe", command, self.port, self.log_file,
                                       timeout)
        return self

    def send_webhooks_to(self, url: str) -> None:
        """Have localstripe deliver every event to ``url``, signed with the secret
        (its ``POST /_config/webhooks/{id}``)."""
        response = httpx.post(f"{self.url}/_config/webhooks/healthflow",
                              data={"url": url, "secret": self.webhook_secret}, timeout=10)
        response.raise_for_status()

    def stop(self, timeout: float = 10.0) -> None:
        stop_child(self.process, timeout)


def stop_child(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a child server, SIGKILL it after ``timeout`` seconds (no-op if it ended)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def ensure_rabbitmq(host: str = "127.0.0.1", port: int = 5672, timeout: float = 60.0) -> None:
    """Make sure RabbitMQ answers on ``host:port``; start the installed one if stopped.

    Raises:
        RuntimeError: when RabbitMQ is neither running nor installed, or will not start.
    """
    if port_open(host, port):
        return
    server = shutil.which("rabbitmq-server")
    if server is None:
        raise RuntimeError(
            "RabbitMQ is not running on 127.0.0.1:5672 and is not installed: "
            "run `make deps` (apt-get install rabbitmq-server) or set AMQP_URL"
        )
    subprocess.run([server, "-detached"], check=False, env=os.environ.copy())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            # The port opens a moment before the broker accepts logins.
            time.sleep(1.0)
            return
        time.sleep(0.5)
    raise RuntimeError("RabbitMQ was started but did not answer on 5672 within the timeout")
