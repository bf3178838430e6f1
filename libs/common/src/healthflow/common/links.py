"""Tokens of the links the platform e-mails for an account (a password reset).

The service that decides (auth) and the service that sends the e-mail (notification)
both derive the token from an identifier that may travel in events and sit in the audit
log (the request's id) and a secret only the two hold, so the token itself is never in
an event, a log or a database: auth stores only its SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

ACCOUNT_LINK_TOKEN_BYTES = 32
"""HMAC-SHA-256 output: 256 bits, 43 URL-safe base64 characters."""


def account_link_token(secret: bytes, purpose: str, reference: str) -> str:
    """The token of the ``purpose`` link for ``reference`` (e.g. ``"password-reset"``, a
    request id): unpadded URL-safe base64 (RFC 4648 §5) of HMAC-SHA-256 (RFC 2104) over
    ``purpose``, a unit separator and ``reference``, keyed with ``secret``.

    Raises:
        ValueError: ``secret`` is shorter than 16 bytes.
    """
    if len(secret) < 16:
        raise ValueError("the account link secret must have at least 16 bytes")
    digest = hmac.new(secret, f"{purpose}\x1f{reference}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def token_digest(token: str) -> str:
    """SHA-256 hex of ``token``: the only form in which a link's token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()
