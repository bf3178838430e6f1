"""Local servers as child processes: the MongoDB-protocol server and RabbitMQ.

:class:`EmbeddedMongo` runs SecantusDB (``secantusd-py``, a MongoDB-wire-protocol
server over WiredTiger) as a child process; it presents itself as a one-node
replica set, so transactions and change streams work. Used by ``make run``
(data under ``./var/mongo``) and by the test fixtures (``:memory:``).

:func:`ensure_rabbitmq` starts the machine's RabbitMQ when it is installed but
stopped, and raises :class:`RuntimeError` with a clear message otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


class EmbeddedMongo:
    """A SecantusDB child process on loopback.

    ``storage`` is a directory (kept across restarts) or ``":memory:"``.
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
        return [exe, "--host", "127.0.0.1", "--port", str(self.port),
                "--storage-path", self.storage, "--log-level", "WARNING"]

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
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def kill(self) -> None:
        """Stop abruptly (fault drills)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


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
