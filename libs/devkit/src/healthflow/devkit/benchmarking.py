"""Small helpers the benchmark scripts share (``make bench``; never used by tests).

Benchmarks print their figures; goals are reported next to the measured
ratio, never asserted. Rates are per second, latencies in milliseconds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

from healthflow.devkit.embedded import EmbeddedMongo, ensure_rabbitmq
from healthflow.devkit.testing import eventually, rabbitmq_vhost

__all__ = [
    "EmbeddedMongo", "ensure_rabbitmq", "eventually", "goal", "percentile", "rabbitmq_vhost",
    "report",
    "stopwatch",
]


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Yields a list that holds the elapsed seconds once the block ends."""
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (0–100) by linear interpolation (``statistics.quantiles``)."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    index = min(max(round(pct) - 1, 0), 98)
    return cuts[index]


def report(title: str, rows: list[tuple[str, str]]) -> None:
    """Print a titled two-column block of figures."""
    width = max(len(name) for name, _ in rows)
    print(f"\n== {title}")
    for name, value in rows:
        print(f"   {name.ljust(width)}  {value}")


def goal(ratio: float, target: float) -> str:
    return f"{ratio:.0%} (goal ≥ {target:.0%}: {'met' if ratio >= target else 'NOT met'})"

