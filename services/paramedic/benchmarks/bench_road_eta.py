"""Road-ETA computation per candidate on the Helsinki road graph (``paramedic.roads``).

Loads the bundled OSM extract once (timed), then for ``BENCH_INCIDENTS`` incident points
spread over central Helsinki ranks ``BENCH_CANDIDATES`` units around each (within about
3 km), as the assigner does for one emergency: one Dijkstra on the reversed graph from
the incident (``RoadGraph.times_to``), then a snap and a look-up per candidate
(``roads.rank``). Prints per ranking and per candidate, p50/p99 in milliseconds. Points
are drawn from a seeded generator: every run ranks the same ones.
"""

from __future__ import annotations

import os
import random
import time

from healthflow.devkit.benchmarking import percentile, report
from healthflow.paramedic import roads

INCIDENTS = int(os.environ.get("BENCH_INCIDENTS", "200"))
CANDIDATES = int(os.environ.get("BENCH_CANDIDATES", "10"))  # the service's default
CENTRE = (60.1699, 24.9384)
SPREAD = (0.012, 0.03)  # degrees of latitude, longitude: about ±1.3 km × ±1.7 km


def point(rng: random.Random, around: tuple[float, float], scale: float = 1.0
          ) -> tuple[float, float]:
    return (around[0] + rng.uniform(-SPREAD[0], SPREAD[0]) * scale,
            around[1] + rng.uniform(-SPREAD[1], SPREAD[1]) * scale)


def main() -> None:
    began = time.perf_counter()
    graph = roads.load("helsinki")
    loaded_s = time.perf_counter() - began
    rng = random.Random(14)  # noqa: S311 - the same points every run, not a secret
    dijkstra, ranking, by_road = [], [], 0
    for _ in range(INCIDENTS):
        incident = point(rng, CENTRE)
        units = [(f"u{j}", *point(rng, incident)) for j in range(CANDIDATES)]
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
                           "(the rest: straight line, beyond the extract)")])


if __name__ == "__main__":
    main()
