"""Road-ETA computation per candidate on the Helsinki road graph (``paramedic.roads``).

Loads the bundled OSM extract once (timed), then for ``BENCH_INCIDENTS`` incidents ranks
``BENCH_CANDIDATES`` units, as the assigner does for one emergency: one Dijkstra on the
reversed graph from the incident (``RoadGraph.times_to``), then a snap and a look-up per
candidate (``roads.rank``). Incidents and units stand within 30 m of road nodes drawn
from the extract (so every one is ranked by road, the costly case), the units within
``BENCH_RADIUS_M`` of their incident. Prints per ranking and per candidate, p50/p99. A
seeded generator: every run ranks the same points.
"""

from __future__ import annotations

import os
import random
import time

from healthflow.devkit.benchmarking import percentile, report
from healthflow.paramedic import roads
from healthflow.paramedic.domain import haversine_m

INCIDENTS = int(os.environ.get("BENCH_INCIDENTS", "200"))
CANDIDATES = int(os.environ.get("BENCH_CANDIDATES", "10"))  # the service's default
RADIUS_M = float(os.environ.get("BENCH_RADIUS_M", "3000"))
JITTER = 30 / 111_195  # degrees: 30 m


def near_road(rng: random.Random, nodes: list[tuple[float, float]]) -> tuple[float, float]:
    lat, lon = rng.choice(nodes)
    return lat + rng.uniform(-JITTER, JITTER), lon + rng.uniform(-JITTER, JITTER)


def around(rng: random.Random, nodes: list[tuple[float, float]],
           incident: tuple[float, float]) -> list[tuple[str, float, float]]:
    near = [n for n in nodes if haversine_m(*incident, *n) <= RADIUS_M]
    return [(f"u{j}", *near_road(rng, near)) for j in range(CANDIDATES)]


def main() -> None:
    began = time.perf_counter()
    graph = roads.load("helsinki")
    loaded_s = time.perf_counter() - began
    rng = random.Random(14)  # noqa: S311 - the same points every run, not a secret
    nodes = sorted(graph.coordinates.values())
    dijkstra, ranking, by_road = [], [], 0
    for _ in range(INCIDENTS):
        incident = near_road(rng, nodes)
        units = around(rng, nodes, incident)
        started = time.perf_counter()
        graph.times_to(*incident)
        dijkstra.append((time.perf_counter() - started) * 1_000)
        started = time.perf_counter()
        etas = roads.rank(graph, incident, units)
        ranking.append((time.perf_counter() - started) * 1_000)
        by_road += sum(e.by_road for e in etas)
    per_candidate = [r / CANDIDATES for r in ranking]
    lookups = [(r - d) / CANDIDATES * 1_000 for r, d in zip(ranking, dijkstra, strict=True)]
    report(f"road ETA on the Helsinki graph ({graph.graph.number_of_nodes()} nodes, "
           f"{graph.graph.number_of_edges()} arcs): {INCIDENTS} rankings of {CANDIDATES} "
           "candidates", [
               ("graph loaded in", f"{loaded_s:.2f} s (once per process, in a thread)"),
               ("ranking (p50 / p99)",
                f"{percentile(ranking, 50):.1f} / {percentile(ranking, 99):.1f} ms"),
               ("  of which Dijkstra", f"{percentile(dijkstra, 50):.1f} / "
                                      f"{percentile(dijkstra, 99):.1f} ms (once per emergency)"),
               ("  snap + look-up", f"{percentile(lookups, 50):.0f} / "
                                   f"{percentile(lookups, 99):.0f} µs per candidate"),
               ("per candidate (p50 / p99)", f"{percentile(per_candidate, 50):.2f} / "
                                            f"{percentile(per_candidate, 99):.2f} ms"),
               ("by road", f"{by_road / (INCIDENTS * CANDIDATES):.0%} of candidates "
                           "(the rest: straight line, not connected)")])


if __name__ == "__main__":
    main()
