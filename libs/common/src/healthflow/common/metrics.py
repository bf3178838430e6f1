"""Prometheus metrics every service exposes on ``/metrics``.

Gauges that need a database or broker round trip (outbox pending count and
age, queue and dead-letter depths) are refreshed by the ``/metrics`` route
just before it renders (see :mod:`healthflow.common.http`). Units: seconds.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "healthflow_http_requests_total", "HTTP requests handled", ["service", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "healthflow_http_request_duration_seconds", "HTTP request latency", ["service", "method"]
)
OUTBOX_PENDING = Gauge("healthflow_outbox_pending", "Outbox records not yet published", ["service"])
OUTBOX_AGE = Gauge(
    "healthflow_outbox_oldest_pending_age_seconds",
    "Age of the oldest unpublished outbox record",
    ["service"],
)
OUTBOX_PUBLISHED = Counter(
    "healthflow_outbox_published_total", "Outbox records published and confirmed", ["service"]
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "healthflow_outbox_publish_failures_total", "Outbox publish attempts that failed", ["service"]
)
CONSUMER_LAG = Gauge(
    "healthflow_consumer_lag_messages", "Messages waiting in the service's queue", ["service"]
)
DLQ_DEPTH = Gauge("healthflow_dlq_depth_messages", "Messages parked in the DLQ", ["service"])
HANDLER_LATENCY = Histogram(
    "healthflow_event_handler_duration_seconds",
    "Time to handle one event (including its transaction)",
    ["service", "type", "outcome"],
)
EVENTS_HANDLED = Counter(
    "healthflow_events_handled_total", "Events handled", ["service", "type", "outcome"]
)
