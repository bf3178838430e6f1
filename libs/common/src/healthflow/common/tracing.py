"""OpenTelemetry tracing across HTTP and AMQP.

W3C Trace Context (``traceparent``) travels in HTTP headers, in AMQP message
headers and in the CloudEvents ``traceparent`` extension. Spans carry ids,
types and routes only — never payloads (they may hold PHI).
Exporters: ``none`` (default), ``console``, or ``otlp`` (when the
``opentelemetry-exporter-otlp`` package is installed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import SpanKind

_configured = False


def setup_tracing(service: str, exporter: str = "none") -> None:
    """Install a tracer provider for this process (once; later calls are ignored)."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"healthflow-{service}"}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True


def tracer() -> trace.Tracer:
    return trace.get_tracer("healthflow")


def current_traceparent() -> str | None:
    """The ``traceparent`` of the active span, or ``None`` outside any trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def current_trace_id() -> str | None:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def inject(headers: dict[str, Any]) -> dict[str, Any]:
    """Add the active trace context to ``headers`` (HTTP or AMQP)."""
    propagate.inject(headers)
    return headers


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent_headers: Mapping[str, Any] | None = None,
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Iterator[trace.Span]:
    """A span, optionally continuing the trace found in ``parent_headers``."""
    token = None
    if parent_headers:
        carrier = {k.lower(): str(v) for k, v in parent_headers.items() if v is not None}
        token = otel_context.attach(propagate.extract(carrier))
    try:
        with tracer().start_as_current_span(name, kind=kind, attributes=attributes) as s:
            yield s
    finally:
        if token is not None:
            otel_context.detach(token)


def producer_span(event_type: str, event_id: str) -> contextlib.AbstractContextManager[trace.Span]:
    return span(
        f"publish {event_type}",
        kind=SpanKind.PRODUCER,
        attributes={"messaging.system": "rabbitmq", "messaging.destination.name": event_type,
                    "messaging.message.id": event_id},
    )


def consumer_span(
    event_type: str, event_id: str, traceparent: str | None
) -> contextlib.AbstractContextManager[trace.Span]:
    return span(
        f"process {event_type}",
        kind=SpanKind.CONSUMER,
        parent_headers={"traceparent": traceparent} if traceparent else None,
        attributes={"messaging.system": "rabbitmq", "messaging.destination.name": event_type,
                    "messaging.message.id": event_id},
    )
