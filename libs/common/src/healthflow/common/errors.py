"""One error hierarchy, rendered as RFC 9457 ``application/problem+json``.

Routes and domain code raise :class:`Problem` subclasses; the handlers that
:func:`install_problem_handlers` registers render them (and FastAPI's
validation errors, unknown routes and anything unexpected) with ``type``,
``title``, ``status``, ``detail`` and ``instance`` members. Unexpected errors
are logged with their traceback and answered with a generic 500: no stack
trace ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

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


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    instance = str(request.url.path) if request is not None else None
    return JSONResponse(
        problem.body(instance),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_JSON,
    )


def _describe_validation_errors(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    items = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        if err.get("type") == "json_invalid":
            # loc is ("body", <character offset>): say so in words.
            reason = (err.get("ctx") or {}).get("error", "malformed")
            offset = loc[1] if len(loc) > 1 else "?"
            items.append({"location": "body",
                          "message": f"not valid JSON at character {offset}: {reason}"})
            continue
        items.append({"location": ".".join(loc), "message": err.get("msg", "invalid")})
    detail = "; ".join(f"{i['location']}: {i['message']}" for i in items[:5])
    if len(items) > 5:
        detail += f"; and {len(items) - 5} more"
    return detail or "the request is invalid", items


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error of ``app`` as problem+json."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, items = _describe_validation_errors(list(exc.errors()))
        return problem_response(UnprocessableContent(detail, errors=items), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cls = _STATUS_CLASSES.get(exc.status_code)
        if exc.status_code == 404 and exc.detail in (None, "Not Found"):
            detail = f"no route matches {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        else:
            detail = str(exc.detail)
        if cls is None:
            problem: Problem = Problem(detail)
            body = problem.body(request.url.path) | {"status": exc.status_code, "title": "Error"}
            return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM_JSON)
        problem = cls(detail, headers=dict(exc.headers or {}))
        return problem_response(problem, request)

    @app.exception_handler(DuplicateKeyError)
    async def _duplicate(request: Request, exc: DuplicateKeyError) -> JSONResponse:
        # A unique index refused the write: the resource (or slot) is taken.
        return problem_response(
            Conflict("a resource with the same unique key already exists"), request
        )

    @app.exception_handler(PyMongoError)
    async def _database(request: Request, exc: PyMongoError) -> JSONResponse:
        # The database is unreachable or stalled past the transaction budget
        # (healthflow.common.mongo.TRANSACTION_BUDGET): the client may retry later.
        if exc.timeout or isinstance(exc, ConnectionFailure):
            log.warning("database unavailable", extra={"path": request.url.path,
                                                      "error": type(exc).__name__})
            return problem_response(ServiceUnavailable(
                "the database did not answer in time; retry later", retry_after=2), request)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        problem = Problem("an unexpected error occurred; it has been logged")
        return problem_response(problem, request)
