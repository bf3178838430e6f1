"""The local mailbox and SMS log that ``make run`` starts beside the notification service.

``python -m healthflow.devkit.mailbox`` runs the notification service's loopback
provider stand-ins (:mod:`healthflow.devkit.sandbox`: a real SMTP server and
a Twilio-compatible Messages API) and keeps what they receive:

* every email as one JSON line in ``<dir>/mail.jsonl`` (``received_at`` aware UTC
  RFC 3339, ``from``, ``to``, ``subject``, ``message_id``, ``text``);
* every SMS as one JSON line in ``<dir>/sms.jsonl`` (``received_at``, ``sid``,
  ``from``, ``to``, ``body``);
* a read-only HTTP view of both on ``127.0.0.1:<port>``: ``GET /mail`` and
  ``GET /sms`` (JSON lists, oldest first; ``?to=`` keeps one recipient), plus
  ``/livez`` and ``/readyz`` for the runner.

The files survive restarts of this process and of the platform (``make clean``
removes them). Nothing about a message is logged: the files are the mailbox.

Environment: ``MAILBOX_SMTP_PORT`` (default 8025), ``MAILBOX_TWILIO_PORT`` (8026),
``MAILBOX_PORT`` (the HTTP view, 8027), ``MAILBOX_DIR`` (``var/mailbox``); the
Twilio account SID and auth token are the notification service's settings (read
at run time, like :mod:`healthflow.devkit.local_admin` reads the auth service's:
the devkit depends on no service package).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from healthflow.common.settings import load_settings
from healthflow.devkit.sandbox import ReceivedMail, SmtpSink, TwilioSink

HOST = "127.0.0.1"
KEEP = 1000  # messages each stand-in keeps in memory (the files keep them all)
log = logging.getLogger("healthflow.mailbox")


class JsonLines:
    """An append-only JSON-lines file, safe to append to from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self.lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)

    def read(self, to: str | None = None) -> list[dict[str, Any]]:
        """Every record, oldest first; only those addressed to ``to`` when given."""
        with self.lock:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        if to is None:
            return records
        return [r for r in records if to == r.get("to") or to in (r.get("to") or [])]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def serve(smtp_port: int, twilio_port: int, port: int, directory: Path,
                stop: asyncio.Event) -> None:
    """Run the SMTP server, the Twilio endpoint and the HTTP view until ``stop`` is set."""
    mail_file = JsonLines(directory / "mail.jsonl")
    sms_file = JsonLines(directory / "sms.jsonl")

    def on_mail(mail: ReceivedMail) -> None:
        try:
            text = mail.part("text/plain")
        except KeyError:
            text = ""
        mail_file.append({"received_at": _now(), "from": mail.mail_from, "to": mail.rcpt_tos,
                          "subject": str(mail.message.get("Subject", "")),
                          "message_id": str(mail.message.get("Message-ID", "")), "text": text})

    class RecordingTwilio(TwilioSink):
        async def _create(self, request: web.Request) -> web.Response:
            before = len(self.messages)
            response = await super()._create(request)
            for sms in self.messages[before:]:
                sms_file.append({"received_at": _now(), "sid": sms.sid, "from": sms.from_,
                                 "to": sms.to, "body": sms.body})
            return response

    settings = load_settings(importlib.import_module("healthflow.notification.settings").Settings)
    smtp = SmtpSink(smtp_port, keep=KEEP)
    smtp.listeners.append(on_mail)
    twilio = RecordingTwilio(settings.twilio_account_sid,
                             settings.twilio_auth_token.get_secret_value(), port=twilio_port,
                             keep=KEEP)

    async def listing(request: web.Request) -> web.Response:
        source = mail_file if request.path == "/mail" else sms_file
        return web.json_response(source.read(request.query.get("to")))

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    view = web.Application()
    view.router.add_get("/mail", listing)
    view.router.add_get("/sms", listing)
    view.router.add_get("/livez", ok)
    view.router.add_get("/readyz", ok)
    runner = web.AppRunner(view, access_log=None)
    smtp.start()
    try:
        await twilio.start()
        await runner.setup()
        await web.TCPSite(runner, HOST, port).start()
        print(json.dumps({"message": "mailbox ready", "smtp": f"{HOST}:{smtp_port}",
                          "twilio": twilio.base_url, "view": f"http://{HOST}:{port}"}),
              flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        await twilio.stop()
        smtp.stop()


def main() -> None:
    """Entry point of ``python -m healthflow.devkit.mailbox`` (stops on SIGINT/SIGTERM)."""
    logging.basicConfig(level=logging.WARNING)
    directory = Path(os.environ.get("MAILBOX_DIR", "var/mailbox"))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await serve(int(os.environ.get("MAILBOX_SMTP_PORT", "8025")),
                    int(os.environ.get("MAILBOX_TWILIO_PORT", "8026")),
                    int(os.environ.get("MAILBOX_PORT", "8027")), directory, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
