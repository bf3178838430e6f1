"""JSON structured logs with request id and trace id, never payloads.

Each record carries ``service``, ``request_id`` (from the ``X-Request-ID`` of
the request being served) and ``trace_id`` (the active OpenTelemetry trace).
Only fields passed explicitly through ``extra=`` are added; request and event
bodies are never logged, and :data:`SENSITIVE_KEYS` are masked if a caller
passes them by mistake.
"""

from __future__ import annotations

import contextvars
import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from healthflow.common.tracing import current_trace_id

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

SENSITIVE_KEYS = frozenset(
    {"password", "token", "access_token", "refresh_token", "authorization", "secret",
     "email", "phone", "full_name", "body", "data", "payload"}
)


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.request_id = request_id_var.get()
        record.trace_id = current_trace_id()
        for key in SENSITIVE_KEYS & record.__dict__.keys():
            setattr(record, key, "[redacted]")
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    """Send this process's logs to stderr as JSON lines (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_healthflow", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._healthflow = True  # type: ignore[attr-defined]
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )
    )
    handler.addFilter(_ContextFilter(service))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries that would log URLs with credentials or bodies stay quiet.
    for noisy in ("aiormq", "aio_pika", "pymongo", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

