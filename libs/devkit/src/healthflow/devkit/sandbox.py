"""Loopback stand-ins for the notification service's providers (development only).

* :class:`SmtpSink` — a real SMTP server (aiosmtpd) that keeps what arrives;
* :class:`TwilioSink` — an HTTP endpoint answering like Twilio's Messages API
  (``POST /2010-04-01/Accounts/{sid}/Messages.json``, HTTP Basic auth, 201 with a
  message resource and its ``SM…`` SID) that records what Twilio would have
  received, and can be told to fail the next requests (``fail_next``);
* :class:`PushSink` — a Web Push endpoint (RFC 8030 ``POST /push/{id}``) keeping the
  encrypted bodies and their headers; :func:`browser_subscription` makes a
  browser-like subscription whose private key can decrypt them.

They speak the real protocols, so the service's real clients talk to them
unchanged, at the endpoints its settings name (``NOTIFICATION_SMTP_HOST``/``_PORT``,
``NOTIFICATION_TWILIO_BASE_URL``, a subscription's endpoint). The service never
starts them: the local mailbox (:mod:`healthflow.devkit.mailbox`, which ``make run``
supervises), the tests and the benchmark do.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ReceivedMail:
    """One message as the SMTP server received it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    received_at: float  # time.perf_counter() when it arrived
    secure: bool = False  # the session ran over TLS (STARTTLS)
    login: str | None = None  # the SMTP AUTH user, when the client authenticated

    def part(self, content_type: str) -> str:
        """The decoded body part of ``content_type`` (``text/plain``, ``text/html``)."""
        for part in self.message.walk():
            if part.get_content_type() == content_type:
                content: str = part.get_content()
                return content
        raise KeyError(content_type)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if isinstance(
            session.auth_data, LoginPassword) else None
        mail = ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), message,
                            time.perf_counter(), secure=session.ssl is not None, login=login)
        with self.sink.lock:
            self.sink.messages.append(mail)
            if self.sink.keep is not None and len(self.sink.messages) > self.sink.keep:
                del self.sink.messages[0]
        for listener in list(self.sink.listeners):
            listener(mail)
        return "250 OK"


class SmtpSink:
    """An SMTP server on loopback (aiosmtpd, its own thread); :meth:`stop` / :meth:`start`
    simulate an outage on the same port.

    With ``tls_context`` it offers STARTTLS and requires it (RFC 3207); with
    ``credentials`` it requires SMTP AUTH PLAIN/LOGIN (RFC 4954) with that user and
    password, over TLS only.
    """

    def __init__(self, port: int | None = None, *, keep: int | None = None,
                 tls_context: ssl.SSLContext | None = None,
                 credentials: tuple[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.keep = keep
        self.tls_context = tls_context
        self.credentials = credentials
        self.messages: list[ReceivedMail] = []
        self.listeners: list[Callable[[ReceivedMail], None]] = []
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> SmtpSink:
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # a line per SMTP command
        options: dict[str, Any] = {}
        if self.tls_context is not None:
            options |= {"tls_context": self.tls_context, "require_starttls": True}
        if self.credentials is not None:
            options |= {"auth_required": True, "auth_require_tls": True,
                        "authenticator": self._authenticate}
        controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                ready_timeout=10, server_hostname="127.0.0.1", **options)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        user, password = self.credentials
        ok = (secrets.compare_digest(auth_data.login, user.encode())
              and secrets.compare_digest(auth_data.password, password.encode()))
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def to(self, address: str) -> list[ReceivedMail]:
        with self.lock:
            return [m for m in self.messages if address in m.rcpt_tos]


async def _serve(port: int, method_routes: list[web.RouteDef]) -> web.AppRunner:
    """An aiohttp server on ``127.0.0.1:port`` with ``method_routes``; its runner."""
    app = web.Application()
    app.add_routes(method_routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _stop(runner: web.AppRunner | None) -> None:
    if runner is not None:
        await runner.cleanup()


@dataclass
class SmsRecord:
    """What Twilio would have received for one message."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    status_callback: str | None
    form: dict[str, str]


@dataclass
class TwilioSink:
    """A Twilio Messages API on loopback (aiohttp)."""

    account_sid: str
    auth_token: str
    port: int = field(default_factory=free_port)
    messages: list[SmsRecord] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    """HTTP statuses to answer the next requests with (503: transient; 400: permanent)."""
    requests: int = 0
    keep: int | None = None
    """Keep only the last ``keep`` messages (a long-running mailbox's memory bound)."""
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> TwilioSink:
        self._runner = await _serve(
            self.port, [web.post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)])
        return self

    async def stop(self) -> None:
        await _stop(self._runner)
        self._runner = None

    def to(self, number: str) -> list[SmsRecord]:
        return [m for m in self.messages if m.to == number]

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        return web.json_response(
            {"code": code, "message": message, "status": status,
             "more_info": f"https://www.twilio.com/docs/errors/{code}"}, status=status)

    async def _create(self, request: web.Request) -> web.Response:
        self.requests += 1
        expected = "Basic " + base64.b64encode(
            f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return self._error(401, 20003, "Authenticate")
        if request.match_info["sid"] != self.account_sid:
            return self._error(404, 20404, "The requested resource was not found")
        if self.fail_next:
            status = self.fail_next.pop(0)
            code = 21211 if status == 400 else 20500
            return self._error(status, code, "Injected failure")
        form = {k: str(v) for k, v in (await request.post()).items()}
        to, body = form.get("To"), form.get("Body")
        if not to or not body or not form.get("From"):
            return self._error(400, 21604, "A 'To', 'From' and 'Body' are required")
        sid = "SM" + secrets.token_hex(16)
        self.messages.append(SmsRecord(sid, self.account_sid, to, form["From"], body,
                                       form.get("StatusCallback"), form))
        if self.keep is not None and len(self.messages) > self.keep:
            del self.messages[0]
        now = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        return web.json_response({
            "sid": sid, "account_sid": self.account_sid, "to": to, "from": form["From"],
            "body": body, "status": "queued", "direction": "outbound-api",
            "api_version": "2010-04-01", "num_segments": "1", "num_media": "0",
            "date_created": now, "date_updated": now, "date_sent": None, "price": None,
            "price_unit": "USD", "error_code": None, "error_message": None,
            "messaging_service_sid": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{self.account_sid}"
                                          f"/Messages/{sid}/Media.json"},
        }, status=201)


@dataclass
class PushRecord:
    subscription: str
    headers: dict[str, str]
    body: bytes


@dataclass
class PushSink:
    """A Web Push service endpoint on loopback: ``POST /push/{id}`` → 201 + Location."""

    port: int = field(default_factory=free_port)
    received: list[PushRecord] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)
    """Subscription ids answered 410 Gone (the browser unsubscribed)."""
    _runner: web.AppRunner | None = None

    def endpoint(self, subscription: str) -> str:
        return f"http://127.0.0.1:{self.port}/push/{subscription}"

    async def start(self) -> PushSink:
        self._runner = await _serve(self.port, [web.post("/push/{id}", self._push)])
        return self

    async def stop(self) -> None:
        await _stop(self._runner)
        self._runner = None

    async def _push(self, request: web.Request) -> web.Response:
        id_ = request.match_info["id"]
        if id_ in self.gone:
            return web.Response(status=410)
        self.received.append(PushRecord(id_, dict(request.headers), await request.read()))
        return web.Response(status=201, headers={
            "Location": f"{self.endpoint(id_)}/messages/{secrets.token_hex(8)}"})


@dataclass
class BrowserSubscription:
    """What a browser holds for one push subscription (keys per RFC 8291)."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes

    def to_json(self) -> dict[str, Any]:
        """``PushSubscription.toJSON()``."""
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": _b64url(public), "auth": _b64url(self.auth_secret)}}

    def decrypt(self, body: bytes) -> bytes:
        """Decrypt an ``aes128gcm`` push message body (RFC 8188 / RFC 8291)."""
        import http_ece

        plain: bytes = http_ece.decrypt(body, private_key=self.private_key,
                                        auth_secret=self.auth_secret, version="aes128gcm")
        return plain


def browser_subscription(endpoint: str) -> BrowserSubscription:
    return BrowserSubscription(endpoint, ec.generate_private_key(ec.SECP256R1()),
                               os.urandom(16))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
