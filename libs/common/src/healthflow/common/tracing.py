"""OpenTelemetry tracing: the SDK, the libraries' instrumentations, the event spans.

What makes the spans:

* server spans: ``opentelemetry-instrumentation-fastapi`` (:func:`instrument_app`,
  every service and the gateway; ``/livez``, ``/readyz``, ``/metrics`` excluded);
* client spans: ``opentelemetry-instrumentation-httpx`` (gateway → service,
  service → service), which also writes the W3C Trace Context headers
  ``traceparent``/``tracestate`` of the outgoing request;
* database spans: ``opentelemetry-instrumentation-pymongo`` (a
  ``pymongo.monitoring`` command listener, so it sees ``AsyncMongoClient`` too;
  registered by :func:`instrument_pymongo` before the first client exists),
  statement capture off: ``db.statement`` is the command name only;
* event spans, kept here because the aio-pika instrumentation carries context in
  AMQP headers only, not in the CloudEvents envelope and not over the in-process
  transport: :func:`publishing` (PRODUCER, the outbox relay's publish) and
  :func:`consuming` (CONSUMER, a delivery's handling).

How an event continues its trace (W3C Trace Context; CloudEvents Distributed
Tracing extension, ``cloudevents/spec`` ``extensions/distributed-tracing.md``;
OpenTelemetry semantic conventions for CloudEvents): when a use case records an
event in the outbox, :func:`event_context` stores the context of the span then
active (the request's, or the consumer's) in the envelope's ``traceparent`` and
``tracestate`` attributes, and nothing alters them afterwards. The relay, later
and in a background task, starts its PRODUCER span as a child of that context.
The transport carries the producer span's context hop by hop
(:func:`message_headers`: AMQP headers ``traceparent``/``tracestate``; the
in-process transport passes the same mapping along); the CONSUMER span is its
child, and links to the envelope's creation context. A delivery without hop
context (an in-process retry read back from the database) is parented on the
envelope's context.

No span attribute holds PHI: ids, types, routes, methods and status codes only.
Query strings keep their parameter names with values replaced by ``REDACTED``;
client addresses are replaced by ``REDACTED``.

Export (per process, once, :func:`setup_tracing`): ``OTEL_EXPORTER`` ``none``
(spans are still made, for the ``trace_id`` of log lines), ``console`` (the SDK's
``ConsoleSpanExporter``) or ``otlp`` (OTLP/HTTP, configured by the standard
``OTEL_EXPORTER_OTLP_*`` variables; needs the ``opentelemetry-exporter-otlp-proto-http``
package, which the images do not install); in addition ``TRACES_FILE`` appends
every span as one JSON object per line (``ReadableSpan.to_json``) to that path,
``{service}`` and ``{pid}`` replaced. Batching follows the SDK's ``OTEL_BSP_*``
variables. Database commands outside any trace (the relay's and workers' polling)
are not exported: a span of the PyMongo instrumentation without a parent is dropped
at export (not by sampling: an unsampled root span of an HTTP call would propagate
``sampled=0`` and leave the service it calls untraced).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link, SpanKind

if TYPE_CHECKING:
    from fastapi import FastAPI

    from healthflow.common.events.envelope import CloudEvent

TRACE_HEADERS = ("traceparent", "tracestate")
"""The W3C Trace Context fields, as HTTP/AMQP headers and CloudEvents attributes."""
EXCLUDED_URLS = "/livez,/readyz,/metrics"
REDACTED = "REDACTED"
_URL_ATTRIBUTES = ("http.url", "url.full")
_QUERY_ATTRIBUTES = ("url.query",)
_ADDRESS_ATTRIBUTES = ("net.peer.ip", "client.address", "http.client_ip")

_PYMONGO_SCOPE = "opentelemetry.instrumentation.pymongo"

_configured = False
_pymongo_instrumented = False


def tracer() -> trace.Tracer:
    return trace.get_tracer("healthflow")


# --------------------------------------------------------------------------- set-up


def setup_tracing(service: str, exporter: str = "none", traces_file: str | None = None) -> None:
    """Install the tracer provider and the HTTP client and database instrumentations.

    Once per process (later calls are ignored: in single-process mode the first
    service names the resource). ``exporter``: ``none``, ``console`` or ``otlp``;
    ``traces_file``: a JSON-lines path (``{service}``, ``{pid}`` replaced), or ``None``.
    """
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"healthflow-{service}"}))
    if exporter == "console":
        provider.add_span_processor(_Batch(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        provider.add_span_processor(_Batch(OTLPSpanExporter()))
    if traces_file:
        path = traces_file.format(service=service, pid=os.getpid())
        provider.add_span_processor(_Batch(JsonLinesSpanExporter(path)))
    trace.set_tracer_provider(provider)
    _instrument_httpx()
    instrument_pymongo()
    _configured = True


def instrument_pymongo() -> None:
    """Register the PyMongo command listener (once; before any client is created).

    ``pymongo.monitoring.register`` applies to clients created afterwards, so
    :func:`healthflow.common.mongo.get_client` calls this first. Statement capture
    is off: ``db.statement`` is the command name (``insert``, ``find``), never
    the documents or filters, which may hold PHI.
    """
    global _pymongo_instrumented
    if _pymongo_instrumented:
        return
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    PymongoInstrumentor().instrument(capture_statement=False)
    _pymongo_instrumented = True


def _instrument_httpx() -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    async def scrub_async(span: trace.Span, _request: Any) -> None:
        scrub_span(span)

    def scrub_sync(span: trace.Span, _request: Any) -> None:
        scrub_span(span)

    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(request_hook=scrub_sync, async_request_hook=scrub_async)


def instrument_app(app: FastAPI) -> None:
    """Give ``app`` a SERVER span per request and WebSocket (FastAPI instrumentation).

    The span continues the caller's ``traceparent``; it is named ``<METHOD> <route
    template>``; the probes are excluded; ASGI ``receive``/``send`` child spans are not made.
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"],
        server_request_hook=lambda span, _scope: scrub_span(span),
    )


class _Batch(BatchSpanProcessor):
    """The SDK's batch processor, minus database commands that belong to no trace."""

    def on_end(self, span: ReadableSpan) -> None:
        scope = span.instrumentation_scope
        if span.parent is None and scope is not None and scope.name.startswith(_PYMONGO_SCOPE):
            return
        super().on_end(span)


class JsonLinesSpanExporter(SpanExporter):
    """Append each span as one line of JSON (the SDK's ``ReadableSpan.to_json``) to ``path``.

    Meant for tests and local debugging: ids are hex strings with a ``0x`` prefix
    (``context.trace_id``, ``context.span_id``, ``parent_id``), ``kind`` is
    ``SpanKind.<NAME>``.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(s.to_json(indent=None) + "\n" for s in spans)
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS


# --------------------------------------------------------------------------- attributes


def scrub_span(span: trace.Span) -> None:
    """Overwrite the attributes an instrumentation set that could carry PHI.

    Query strings (``http.url``, ``url.full``, ``url.query``) keep their names with
    every value ``REDACTED``; client addresses become ``REDACTED``.
    """
    attributes: Mapping[str, Any] = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and "?" in value:
            parts = urlsplit(value)
            span.set_attribute(key, urlunsplit(parts._replace(query=_redact_query(parts.query))))
    for key in _QUERY_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            span.set_attribute(key, _redact_query(value))
    for key in _ADDRESS_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, REDACTED)


def _redact_query(query: str) -> str:
    return "&".join(f"{name}={REDACTED}" for name, _ in parse_qsl(query, keep_blank_values=True))


def current_trace_id() -> str | None:
    """The active trace id as 32 lowercase hex digits, or ``None`` outside any trace."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def inject(headers: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add the active context's ``traceparent``/``tracestate`` to ``headers``."""
    propagate.inject(headers)
    return headers


# --------------------------------------------------------------------------- events


def event_context() -> dict[str, str]:
    """The active span's context as CloudEvents extension attributes.

    ``{"traceparent": "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"}`` plus
    ``"tracestate"`` when there is one (W3C Trace Context); ``{}`` outside any trace.
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: v for k, v in carrier.items() if k in TRACE_HEADERS}


def _envelope_context(event: CloudEvent) -> otel_context.Context:
    carrier = {k: v for k in TRACE_HEADERS if (v := getattr(event, k, None))}
    return propagate.extract(carrier)


def _event_attributes(event: CloudEvent, system: str, operation: str) -> dict[str, str]:
    from healthflow.common.events.envelope import EXCHANGE

    return {
        "messaging.system": system,
        "messaging.operation.type": operation,
        "messaging.destination.name": EXCHANGE,
        "messaging.rabbitmq.destination.routing_key": event.type,
        "messaging.message.id": event.id,
        "cloudevents.event_id": event.id,
        "cloudevents.event_type": event.type,
        "cloudevents.event_source": event.source,
    }


@contextlib.contextmanager
def publishing(event: CloudEvent, system: str) -> Iterator[trace.Span]:
    """The PRODUCER span ``publish <type>`` of handing ``event`` to the transport.

    Its parent is the context stored in the envelope when the event was recorded
    (a new trace when there is none). While it is active, :func:`message_headers`
    gives the transport this span's context.
    """
    with tracer().start_as_current_span(
        f"publish {event.type}", context=_envelope_context(event), kind=SpanKind.PRODUCER,
        attributes=_event_attributes(event, system, "send"),
    ) as span:
        yield span


def message_headers(event: CloudEvent) -> dict[str, str]:
    """The hop-by-hop trace headers of a message carrying ``event``.

    The active span's context (the relay's PRODUCER span), else the envelope's.
    """
    return event_context() or {k: v for k in TRACE_HEADERS if (v := getattr(event, k, None))}


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def consuming(
    event: CloudEvent, headers: Mapping[str, Any] | None, system: str
) -> Iterator[trace.Span]:
    """The CONSUMER span ``process <type>`` of handling one delivery of ``event``.

    Parent: the hop context in ``headers`` (AMQP headers, or what the in-process
    transport passed along), else the envelope's. A link to the envelope's
    context records where the event was created when that is not the parent.
    """
    carrier = {k: _text(v) for k in TRACE_HEADERS if (v := (headers or {}).get(k))}
    created = _envelope_context(event)
    parent = propagate.extract(carrier) if carrier else created
    links = []
    created_span = trace.get_current_span(created).get_span_context()
    if carrier and created_span.is_valid:
        links.append(Link(created_span))
    with tracer().start_as_current_span(
        f"process {event.type}", context=parent, kind=SpanKind.CONSUMER, links=links,
        attributes=_event_attributes(event, system, "process"),
    ) as span:
        yield span
