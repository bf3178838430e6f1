"""What one run of the platform does: flags and environment (``healthflow-run --help``).

Environment (flags win over variables): ``MONGODB_URL``, ``AMQP_URL``,
``S3_ENDPOINT_URL``, ``HEALTHFLOW_VAR_DIR`` (default ``./var``), ``HEALTHFLOW_MONGO_PORT``
(embedded SecantusDB, default 27017 or a free port when taken),
``GATEWAY_PORT`` and ``<NAME>_PORT`` (e.g. ``AUTH_PORT``) to move any port,
``HEALTHFLOW_READY_TIMEOUT`` (seconds, default 120), ``HEALTHFLOW_BUS_USERS=shared``
(every service uses ``AMQP_URL``'s account instead of its own RabbitMQ user,
:mod:`healthflow.devkit.bususers`), ``HEALTHFLOW_ADMIN_EMAIL``
and ``HEALTHFLOW_ADMIN_PASSWORD``, ``LOG_LEVEL``, ``NO_COLOR``. A ``.env`` file
in the working directory is read first (without overriding the environment).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from healthflow.devkit.discovery import resolve_ports

Mode = Literal["auto", "single", "multi"]
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_MONGO_PORT = 27017


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
