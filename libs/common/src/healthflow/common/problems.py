"""The errors a client may see, as plain exceptions (RFC 9457 problem details).

Domain code raises these; it imports nothing of HTTP or the database, so domain
modules stay pure. :mod:`healthflow.common.errors` renders them as
``application/problem+json`` in every app.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://healthflow.example/problems/"


class Problem(Exception):
    """Base of every error a client may see (RFC 9457 problem details).

    Subclasses set ``status``, ``title`` and ``slug`` (the last part of the
    problem ``type`` URI); instances carry a human ``detail`` and optional
    extension members.
    """

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    slug: ClassVar[str] = "internal"

    def __init__(
        self, detail: str, *, headers: dict[str, str] | None = None, **extensions: Any
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


class BadRequest(Problem):
    status, title, slug = 400, "Bad Request", "bad-request"


class Unauthorized(Problem):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str = "a valid bearer token is required", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="healthflow"'})
        super().__init__(detail, **kw)


class Forbidden(Problem):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(Problem):
    status, title, slug = 404, "Not Found", "not-found"


class MethodNotAllowed(Problem):
    status, title, slug = 405, "Method Not Allowed", "method-not-allowed"


class Conflict(Problem):
    status, title, slug = 409, "Conflict", "conflict"


class PayloadTooLarge(Problem):
    status, title, slug = 413, "Content Too Large", "content-too-large"


class UnsupportedMediaType(Problem):
    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"


class UnprocessableContent(Problem):
    status, title, slug = 422, "Unprocessable Content", "validation"


class TooManyRequests(Problem):
    status, title, slug = 429, "Too Many Requests", "rate-limited"

    def __init__(self, detail: str, *, retry_after: int, **kw: Any) -> None:
        headers = kw.pop("headers", {}) | {"Retry-After": str(max(1, retry_after))}
        super().__init__(detail, headers=headers, **kw)


class ServiceUnavailable(Problem):
    status, title, slug = 503, "Service Unavailable", "unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5, **kw: Any) -> None:
        headers = kw.pop("headers", {}) | {"Retry-After": str(max(1, retry_after))}
        super().__init__(detail, headers=headers, **kw)


class GatewayTimeout(Problem):
    status, title, slug = 504, "Gateway Timeout", "upstream-timeout"


_STATUS_CLASSES: dict[int, type[Problem]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        UnprocessableContent,
        ServiceUnavailable,
        GatewayTimeout,
    )
}
