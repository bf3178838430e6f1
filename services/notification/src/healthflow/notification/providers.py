"""The channels' real clients: SMTP (aiosmtplib), Twilio (twilio), Web Push (pywebpush).

Each sender's ``send`` returns the provider's id for the message and raises
:class:`TransientError` (worth retrying: connection refused, timeouts, SMTP 4xx,
HTTP 5xx/429) or :class:`PermanentError` (retrying cannot help: SMTP 5xx,
Twilio 4xx such as an invalid number, a push subscription that is gone).
"""

from __future__ import annotations

import errno
import json
import logging
import socket
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiohttp
import aiosmtplib
from aiohttp.abc import ResolveResult
from pywebpush import WebPushException, webpush_async
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client as TwilioClient

from healthflow.common.outbound import OutboundPolicy, UnsafeURL, check_addresses, check_url
from healthflow.notification.settings import Settings

_TWILIO_LOG = logging.getLogger("healthflow.notification.twilio")
_TWILIO_LOG.setLevel(logging.WARNING)  # the client logs 8 INFO lines per request


class SendError(Exception):
    """A provider refused or could not take a message."""


class TransientError(SendError):
    """Worth retrying later."""


class PermanentError(SendError):
    """Retrying cannot help; the delivery fails."""


class EmailSender:
    """Multipart (text + HTML) email through any SMTP server (RFC 5321), STARTTLS and AUTH
    when configured (``smtp_security``, ``smtp_username``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def build(self, *, to: str, subject: str, text: str, html: str,
              message_id: str) -> EmailMessage:
        """The RFC 5322 message: ``multipart/alternative`` of text/plain then text/html."""
        message = EmailMessage()
        message["From"] = self.settings.email_from
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = message_id
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message

    @staticmethod
    def message_id(delivery_id: str) -> str:
        """A Message-ID derived from the delivery id (so a resend carries the same id)."""
        return f"<{delivery_id}@notification.healthflow>"

    async def send(self, *, delivery_id: str, to: str, subject: str, text: str,
                   html: str) -> str:
        """Send; returns the Message-ID. Raises TransientError / PermanentError."""
        s = self.settings
        message_id = self.message_id(delivery_id)
        message = self.build(to=to, subject=subject, text=text, html=html,
                             message_id=message_id)
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                use_tls=s.smtp_security == "tls",
                start_tls=s.smtp_security == "starttls",
                cert_bundle=s.smtp_ca_file,
                timeout=s.smtp_timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if all(400 <= c < 500 for c in codes):
                raise TransientError(f"SMTP recipient deferred: {codes}") from None
            raise PermanentError(f"SMTP recipient refused: {codes}") from None
        except aiosmtplib.SMTPResponseException as exc:
            if 400 <= exc.code < 500:
                raise TransientError(f"SMTP {exc.code}") from None
            raise PermanentError(f"SMTP {exc.code}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientError(f"SMTP unavailable: {type(exc).__name__}") from None
        return message_id


class SmsSender:
    """SMS through Twilio's Messages API with Twilio's own client (async HTTP client).

    ``twilio_base_url`` replaces the API domain's ``base_url`` (the attribute the
    library's :class:`twilio.base.domain.Domain` builds every request URL from),
    so the same code talks to Twilio or to a local endpoint.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._http: AsyncTwilioHttpClient | None = None
        self._client: TwilioClient | None = None

    def client(self) -> TwilioClient:
        if self._client is None:
            s = self.settings
            self._http = AsyncTwilioHttpClient(timeout=s.twilio_timeout, logger=_TWILIO_LOG)
            self._client = TwilioClient(
                s.twilio_account_sid, s.twilio_auth_token.get_secret_value(),
                http_client=self._http, environment={},
            )
            self._client.api.base_url = s.twilio_base_url.rstrip("/")
        return self._client

    async def send(self, *, to: str, body: str) -> str:
        """Send; returns the message SID. Raises TransientError / PermanentError."""
        s = self.settings
        try:
            message = await self.client().messages.create_async(
                to=to, from_=s.twilio_from, body=body,
                status_callback=s.twilio_status_callback_url,
            )
        except TwilioRestException as exc:
            if exc.status >= 500 or exc.status == 429:
                raise TransientError(f"Twilio {exc.status}") from None
            raise PermanentError(f"Twilio {exc.status} (code {exc.code})") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TransientError(f"Twilio unreachable: {type(exc).__name__}") from None
        except TwilioException as exc:
            raise TransientError(f"Twilio client error: {type(exc).__name__}") from None
        if not message.sid:
            raise TransientError("Twilio answered without a message SID")
        return str(message.sid)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
            self._client = None


class GuardedResolver(aiohttp.ThreadedResolver):
    """aiohttp's resolver, refusing every name that resolves to a non-global address: the
    outbound guard applied to the very addresses the connection will use (DNS rebinding
    after the subscription was checked is refused too)."""

    def __init__(self, policy: OutboundPolicy) -> None:
        super().__init__()
        self.policy = policy

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        try:
            check_addresses(host, [r["host"] for r in results], self.policy)
        except UnsafeURL as exc:
            raise OSError(errno.EACCES, exc.detail) from None
        return results


class PushSender:
    """Web Push (RFC 8030) with VAPID (RFC 8292), payload encrypted aes128gcm (RFC 8291).

    Every send checks the endpoint against ``settings.push_policy`` again, and the HTTP
    session connects only to addresses the policy allows (:class:`GuardedResolver`)."""

    def __init__(self, settings: Settings, vapid_private_key: str) -> None:
        self.settings = settings
        self.vapid_private_key = vapid_private_key
        self._session: aiohttp.ClientSession | None = None

    async def send(self, *, subscription: dict[str, Any], payload: dict[str, Any],
                   ttl: int | None = None, headers: Mapping[str, str] | None = None) -> str:
        """Send; returns the push service's message URL (``Location``) or the endpoint host.

        ``ttl``: seconds the push service may hold the message (RFC 8030 §5.2; default
        ``settings.push_ttl``); ``headers``: extra request headers such as ``Urgency``
        and ``Topic`` (RFC 8030 §5.3, §5.4).

        Raises:
            PermanentError: 404/410 (the subscription is gone), another 4xx, or an
                endpoint the outbound policy refuses (nothing is sent).
            TransientError: 5xx, 429, connection errors.
        """
        policy = self.settings.push_policy
        try:
            await check_url(str(subscription.get("endpoint", "")), policy)
        except UnsafeURL as exc:
            raise PermanentError(f"push endpoint refused: {exc.detail}") from None
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=GuardedResolver(policy)))
        extra: dict[str, str | int | float] = dict(headers or {})
        try:
            response = await webpush_async(
                subscription_info=subscription,
                data=json.dumps(payload, separators=(",", ":")),
                vapid_private_key=self.vapid_private_key,
                vapid_claims={"sub": self.settings.vapid_subject},
                ttl=self.settings.push_ttl if ttl is None else ttl,
                headers=extra,
                timeout=self.settings.push_timeout,
                aiohttp_session=self._session,
            )
        except WebPushException as exc:
            status = exc.status_code or 0
            if status >= 500 or status == 429 or status == 0:
                raise TransientError(f"push service {status}") from None
            raise PermanentError(f"push service {status}") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"push service unreachable: {type(exc).__name__}") from None
        if isinstance(response, str):  # curl mode only
            return response
        return response.headers.get("Location") or f"push-{response.status}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
