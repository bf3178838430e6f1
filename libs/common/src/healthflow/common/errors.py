"""One error hierarchy, rendered as RFC 9457 ``application/problem+json``.

Routes and domain code raise :class:`Problem` subclasses (defined, free of HTTP
and database imports, in :mod:`healthflow.common.problems`, and re-exported
here); the handlers that :func:`install_problem_handlers` registers render them
(and FastAPI's validation errors, unknown routes and anything unexpected) with
``type``, ``title``, ``status``, ``detail`` and ``instance`` members. Unexpected errors
are logged with their traceback and answered with a generic 500: no stack
trace ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException

from healthflow.common.problems import (
    _STATUS_CLASSES,
    PROBLEM_BASE,
    PROBLEM_JSON,
    BadRequest,
    Conflict,
    Forbidden,
    GatewayTimeout,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Problem,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnprocessableContent,
    UnsupportedMediaType,
)

__all__ = [
    "PROBLEM_BASE",
    "PROBLEM_JSON",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "GatewayTimeout",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "Problem",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UnprocessableContent",
    "UnsupportedMediaType",
    "install_problem_handlers",
    "problem_response",
]

log = logging.getLogger(__name__)


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
