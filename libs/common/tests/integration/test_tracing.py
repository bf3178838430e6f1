"""One trace from a request to the consumer of its event, in one process (in-process
transport): the FastAPI server span, PyMongo's command spans (AsyncMongoClient), the
relay's PRODUCER span parented on the envelope's context, the CONSUMER span under it.
The multi-process chain through the gateway is ``gateway/tests/e2e/test_tracing.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from healthflow.common import tracing
from healthflow.common.events.consumer import envelope_handler
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import UnitOfWork, recorded_events
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import ServiceSettings
from healthflow.devkit.testing import eventually, running_app


@pytest.fixture
def spans() -> InMemorySpanExporter:
    tracing.setup_tracing("tests")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
async def widget_consumer(mongodb_url: str, unique_name: str) -> AsyncIterator[list[CloudEvent]]:
    """A second service in this process consuming ``widget.created``."""
    received: list[CloudEvent] = []

    @envelope_handler
    async def on_widget(event: CloudEvent, uow: UnitOfWork) -> None:
        await uow.db.seen.insert_one({"_id": event.id}, session=uow.session)
        received.append(event)

    runtime = ServiceRuntime(
        ServiceSettings(service_name=f"{unique_name}c", mongodb_url=mongodb_url,
                        transport="inprocess"),
        handlers={"widget.created": on_widget},
    )
    await runtime.start()
    try:
        yield received
    finally:
        await runtime.stop()


def one(found: list[ReadableSpan], what: str) -> ReadableSpan:
    assert len(found) == 1, (what, [(s.name, s.kind) for s in found])
    return found[0]


async def test_a_request_its_database_commands_and_its_event_share_one_trace(
    spans, widget_consumer, widget_app
):
    async with running_app(widget_app) as client:
        # an unknown query parameter is ignored by the route; its value must not be kept
        response = await client.post("/api/v1/widgets?note=Jane+Doe",
                                     json={"name": "w-trace", "size": 3})
        assert response.status_code == 201, response.text
        await eventually(lambda: len(widget_consumer) == 1, within=15,
                         message="the consumer never handled widget.created")
        await eventually(lambda: any(s.kind == SpanKind.CONSUMER
                                     for s in spans.get_finished_spans()), within=5)
        recorded = await recorded_events(widget_app.state.runtime.db,
                                         {"type": "widget.created"})

    finished = list(spans.get_finished_spans())
    server = one([s for s in finished if s.kind == SpanKind.SERVER
                  and s.name == "POST /api/v1/widgets"], "server span")
    trace_id = server.context.trace_id
    in_trace = [s for s in finished if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in in_trace}

    # PyMongo's listener saw the AsyncMongoClient's commands, without their documents
    commands = [s for s in in_trace if s.attributes.get("db.system") == "mongodb"]
    assert {s.name for s in commands} >= {f"{widget_app.state.runtime.db.name}.insert"}
    assert all(s.kind == SpanKind.CLIENT for s in commands)
    assert all(s.attributes["db.statement"] == s.name.rsplit(".", 1)[1] for s in commands), [
        dict(s.attributes or {}) for s in commands]

    # the envelope holds the request's context, and the relay's span continues it
    [event] = recorded
    assert event.traceparent is not None and event.traceparent.startswith(
        f"00-{trace_id:032x}-{server.context.span_id:016x}-"), event.traceparent
    producer = one([s for s in in_trace if s.kind == SpanKind.PRODUCER], "producer span")
    assert producer.name == "publish widget.created"
    assert producer.parent is not None and producer.parent.span_id == server.context.span_id
    assert producer.attributes["messaging.message.id"] == event.id

    consumer = one([s for s in in_trace if s.kind == SpanKind.CONSUMER], "consumer span")
    assert consumer.name == "process widget.created"
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    assert [link.context.span_id for link in consumer.links] == [server.context.span_id]
    assert any(s.parent is not None and s.parent.span_id == consumer.context.span_id
               and s.attributes.get("db.mongodb.collection") == "seen" for s in in_trace)
    assert set(by_id) >= {server.context.span_id, producer.context.span_id}

    # no PHI: the query's value is gone wherever the URL was recorded
    for span in finished:
        for value in (span.attributes or {}).values():
            assert "Jane" not in str(value), (span.name, dict(span.attributes or {}))
    assert "note=REDACTED" in str(server.attributes.get("http.url", "")) + str(
        server.attributes.get("url.query", ""))


def test_scrub_span_redacts_query_values_and_client_addresses(spans):
    with tracing.tracer().start_as_current_span("GET /x", attributes={
            "http.url": "http://h/api/v1/x?name=Jane&email=a%40b.org",
            "url.query": "name=Jane", "client.address": "203.0.113.9",
            "http.target": "/api/v1/x"}) as span:
        tracing.scrub_span(span)
    [done] = [s for s in spans.get_finished_spans() if s.name == "GET /x"]
    assert done.attributes["http.url"] == "http://h/api/v1/x?name=REDACTED&email=REDACTED"
    assert done.attributes["url.query"] == "name=REDACTED"
    assert done.attributes["client.address"] == "REDACTED"
    assert done.attributes["http.target"] == "/api/v1/x"


async def test_httpx_client_spans_keep_no_query_values(spans):
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):  # nothing listens on port 9 (discard)
            await client.get("http://127.0.0.1:9/api/v1/x?name=Jane+Doe&phone=%2B447400")
    [span] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT
              and "127.0.0.1:9/" in str(s.attributes.get("http.url", s.attributes.get("url.full")))]
    url = span.attributes.get("http.url", span.attributes.get("url.full"))
    assert url == "http://127.0.0.1:9/api/v1/x?name=REDACTED&phone=REDACTED"
