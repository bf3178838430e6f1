"""``healthflow-deadletters``: list, inspect and replay a service's parked messages.

Usage::

    healthflow-deadletters list SERVICE [--limit N]      # one JSON line per dead letter
    healthflow-deadletters show SERVICE ID [--with-data] # one JSON document
    healthflow-deadletters replay SERVICE ID [ID ...]    # or: replay SERVICE --all

``list`` prints :meth:`DeadLetter.summary` (never the ``data`` payload, which may
hold PHI); ``show`` prints the envelope without ``data`` plus the reason, error,
attempts and AMQP headers, and the payload only with ``--with-data``; ``replay``
sends the chosen messages back to that service alone (see
:meth:`Transport.replay`) and prints ``{"replayed": n, "missing": [ids]}``.

Configuration (environment, or ``.env``; see :mod:`healthflow.common.settings`):
``TRANSPORT`` (``rabbitmq``; the in-process transport's MongoDB dead-letter
store is a backend still to come) and ``AMQP_URL`` (default
``amqp://guest:guest@127.0.0.1:5672/``).

Exit status: 0 done; 1 an id was not found; 2 usage or configuration error;
3 the broker could not be reached or did not confirm a replay.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.transport import DeadLetter, PublishError, Transport
from healthflow.common.settings import ConfigurationError, ServiceSettings, load_settings

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_BROKER = 3

# How many dead letters `show` and `replay ID` look through at most.
SCAN_LIMIT = 100_000


class DeadLetterSettings(ServiceSettings):
    """The platform-wide settings, read as the ``deadletters`` tool."""

    service_name: str = "deadletters"


def _rabbitmq(settings: ServiceSettings) -> Transport:
    from healthflow.common.events.rabbit.transport import RabbitTransport

    return RabbitTransport(settings.amqp_url, connection_name="healthflow-deadletters",
                           platform_topology=settings.amqp_platform_topology)


def _inprocess(settings: ServiceSettings) -> Transport:
    raise ConfigurationError(
        "TRANSPORT=inprocess: its dead letters live in MongoDB, which this tool "
        "cannot read yet; use TRANSPORT=rabbitmq"
    )


# One factory per TRANSPORT value: a backend is a Transport whose dead_letters()
# and replay() reach that transport's dead-letter store.
BACKENDS: dict[str, Callable[[ServiceSettings], Transport]] = {
    "rabbitmq": _rabbitmq,
    "inprocess": _inprocess,
}


def make_transport(settings: ServiceSettings) -> Transport:
    """The (unconnected) transport for ``settings.transport``.

    Raises:
        ConfigurationError: when that transport has no dead-letter backend here.
    """
    factory = BACKENDS.get(settings.transport)
    if factory is None:
        raise ConfigurationError(
            f"TRANSPORT: unsupported value {settings.transport!r} "
            f"(one of {', '.join(sorted(BACKENDS))})"
        )
    return factory(settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="healthflow-deadletters",
        description="List, inspect and replay a service's dead letters.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    list_cmd = commands.add_parser("list", help="one JSON line per dead letter, oldest first")
    list_cmd.add_argument("service")
    list_cmd.add_argument("--limit", type=int, default=100, help="at most N (default 100)")

    show = commands.add_parser("show", help="one dead letter: envelope head, reason, headers")
    show.add_argument("service")
    show.add_argument("id")
    show.add_argument("--with-data", action="store_true", help="include the payload (may hold PHI)")

    replay = commands.add_parser("replay", help="send dead letters back to SERVICE only")
    replay.add_argument("service")
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument("--all", action="store_true", help="replay every dead letter")
    return parser


def jsonable(value: Any) -> Any:
    """AMQP header values as JSON: datetimes ISO 8601, bytes UTF-8 (else base64)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode("ascii")}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def describe(letter: DeadLetter, *, with_data: bool) -> dict[str, Any]:
    """``show``'s document: envelope (``data`` only ``with_data``), reason, error, headers."""
    envelope: dict[str, Any] | None
    try:
        event = CloudEvent.from_json_bytes(letter.body)
    except Exception:
        envelope = None
    else:
        envelope = event.model_dump(mode="json", exclude_none=True)
        if not with_data:
            envelope.pop("data", None)
    document: dict[str, Any] = {
        "id": letter.id,
        "service": letter.service,
        "reason": letter.reason,
        "error": letter.error,
        "attempts": letter.attempts,
        "parked_at": letter.parked_at.isoformat() if letter.parked_at else None,
        "envelope": envelope,
        "headers": jsonable(letter.headers),
    }
    if with_data and envelope is None:
        document["body"] = jsonable(letter.body)
    return document


def _emit(out: TextIO, document: Any) -> None:
    out.write(json.dumps(document, default=str) + "\n")


async def _all_letters(transport: Transport, service: str) -> list[DeadLetter]:
    depth = (await transport.queue_depths(service))["dlq"]
    return await transport.dead_letters(service, limit=min(max(depth, 1), SCAN_LIMIT))


async def run(args: argparse.Namespace, transport: Transport, out: TextIO, err: TextIO) -> int:
    """Carry out the parsed command on a connected ``transport``; returns the exit status."""
    if args.command == "list":
        for letter in await transport.dead_letters(args.service, limit=args.limit):
            _emit(out, letter.summary())
        return EXIT_OK

    if args.command == "show":
        for letter in await _all_letters(transport, args.service):
            if letter.id == args.id:
                out.write(json.dumps(describe(letter, with_data=args.with_data), indent=2) + "\n")
                return EXIT_OK
        err.write(f"no dead letter {args.id!r} for service {args.service!r}\n")
        return EXIT_NOT_FOUND

    # replay
    if args.all:
        _emit(out, {"replayed": await transport.replay(args.service), "missing": []})
        return EXIT_OK
    present = {letter.id for letter in await _all_letters(transport, args.service)}
    wanted = list(dict.fromkeys(args.ids))
    found = [i for i in wanted if i in present]
    missing = [i for i in wanted if i not in present]
    replayed = await transport.replay(args.service, found) if found else 0
    _emit(out, {"replayed": replayed, "missing": missing})
    if missing:
        err.write(f"not found for service {args.service!r}: {', '.join(missing)}\n")
        return EXIT_NOT_FOUND
    return EXIT_OK


async def _main(args: argparse.Namespace, transport: Transport) -> int:
    try:
        await transport.connect()
    except Exception as exc:
        sys.stderr.write(f"cannot reach the broker: {type(exc).__name__}: {exc}\n")
        return EXIT_BROKER
    try:
        return await run(args, transport, sys.stdout, sys.stderr)
    except PublishError as exc:
        sys.stderr.write(f"replay incomplete: {exc}\n")
        return EXIT_BROKER
    finally:
        await transport.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``healthflow-deadletters``; returns the exit status (see module doc)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "replay" and bool(args.ids) == bool(args.all):
        parser.print_usage(sys.stderr)
        sys.stderr.write("replay: give dead-letter IDs or --all (not both)\n")
        return EXIT_USAGE
    if args.command == "list" and args.limit < 1:
        sys.stderr.write("list: --limit must be at least 1\n")
        return EXIT_USAGE
    try:
        transport = make_transport(load_settings(DeadLetterSettings))
    except ConfigurationError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_USAGE
    # The tool reports broker problems itself; aiormq/aio-pika would log each attempt.
    noisy = [logging.getLogger(name) for name in ("aiormq", "aio_pika")]
    levels = [logger.level for logger in noisy]
    for logger in noisy:
        logger.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(_main(args, transport))
    finally:
        for logger, level in zip(noisy, levels, strict=True):
            logger.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
