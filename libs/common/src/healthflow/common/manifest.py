"""A service declares itself once: its manifest.

Each service package exports a :class:`ServiceManifest` as the entry point
``healthflow.services`` (``[project.entry-points."healthflow.services"]`` in its
``pyproject.toml``: ``auth = "healthflow.auth.manifest:MANIFEST"``). Everything
that used to list the services by hand reads the manifests instead:

* :data:`healthflow.common.topology.SERVICES` (names and internal ports: the
  platform runner, the gateway's upstream defaults, the compose and Kubernetes
  checks, the event catalog);
* the gateway's route table (:data:`healthflow.gateway.routes.ROUTES`): each
  route prefix with its edge policy group, its public methods and the policies of
  single methods on the prefix (``methods``) or on sub-paths below it (``paths``).

A new service (``make new-service NAME=x``) therefore touches no shared file:
installing its package is what makes it part of the platform.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "healthflow.services"
READS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class RouteDecl:
    """``prefix`` (a path, no trailing slash) is served by this service at the edge under the
    policy group ``policy`` (``healthflow.gateway.routes.POLICIES``); ``public`` names
    the methods that need no token there (a public directory, a signed callback);
    ``methods`` maps a method to the policy it gets on the prefix itself, not below it
    (``{"POST": "upload"}``: a large body for creating in the collection, not for every
    action under it); ``paths`` maps a sub-path pattern below the prefix to such a
    method map (``{"/{id}/receipt": {"PUT": "document"}}``: the ``PUT`` of one entry's
    receipt, not its ``GET``, not the entry, not anything deeper). A pattern starts with
    ``/`` and is matched segment by segment (:func:`path_matches`): a literal segment
    matches itself, ``*`` or ``{name}`` exactly one segment; no regular expressions."""

    prefix: str
    policy: str = "default"
    public: frozenset[str] = frozenset()
    methods: Mapping[str, str] = field(default_factory=dict, hash=False)
    paths: Mapping[str, Mapping[str, str]] = field(default_factory=dict, hash=False)


def is_wildcard(segment: str) -> bool:
    """``*`` or ``{name}``: a pattern segment that stands for any one segment."""
    return segment == "*" or (len(segment) > 2 and segment[0] == "{" and segment[-1] == "}"
                              and "{" not in segment[1:-1] and "}" not in segment[1:-1])


def check_pattern(pattern: str) -> None:
    """Refuse a path pattern that :func:`path_matches` would not read as written.

    Raises:
        ValueError: it does not start with ``/``, ends with ``/``, has an empty
            segment, or a segment holding ``{``, ``}`` or ``*`` that is not a whole
            wildcard (``/{id}x``, ``/a*``).
    """
    if not pattern.startswith("/") or pattern.endswith("/") or "//" in pattern:
        raise ValueError(f"a path pattern is /segment[/segment…], not {pattern!r}")
    for segment in pattern[1:].split("/"):
        if not is_wildcard(segment) and any(c in segment for c in "{}*"):
            raise ValueError(f"pattern {pattern!r}: {segment!r} is neither a literal "
                             "segment nor a whole wildcard (* or {name})")


def path_matches(pattern: str, path: str) -> bool:
    """``path`` has exactly ``pattern``'s segments: each literal one equal, each wildcard
    (``*``, ``{name}``) any non-empty one (``/{id}/receipt`` matches ``/abc/receipt``,
    not ``/abc``, ``/abc/receipt/x`` or ``//receipt``)."""
    want, have = pattern.split("/"), path.split("/")
    return len(want) == len(have) and all(
        w == h or (is_wildcard(w) and h != "") for w, h in zip(want, have, strict=True))


@dataclass(frozen=True)
class ServiceManifest:
    """What the platform needs to know of one service.

    ``port``: its internal HTTP port (clients only reach the gateway);
    ``routes``: what the gateway forwards to it; ``sidecars``: modules the local
    runner supervises beside it in development (``python -m <module>``), e.g. the
    notification service's local mailbox; ``listeners``: other ports it listens on
    itself, by name, with their defaults (e.g. xray's ``{"dicom": 11112}``, its DICOM
    C-STORE SCP): the runner hands each over as ``<NAME>_<LISTENER>_PORT`` (moved to a
    free port when taken, ``0`` — a free one — for extra replicas);
    ``summary``: one line for the docs;
    ``volumes``: named volumes it shares with a server beside it, by name, with their
    mount path (teleconference's ``{"janus-recordings": …}``, where Janus writes the
    recordings the service processes), mounted at the same path in compose;
    ``calls``: the services whose public HTTP API this one calls synchronously (where
    an event cannot do: docs/decisions.md) — the runner, compose and Kubernetes give
    it ``<NAME>_URL`` (e.g. ``PRESCRIPTION_URL``), the callee's internal address.
    """

    name: str
    port: int
    summary: str
    routes: tuple[RouteDecl, ...] = ()
    sidecars: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()
    listeners: Mapping[str, int] = field(default_factory=dict, hash=False)
    volumes: Mapping[str, str] = field(default_factory=dict, hash=False)

    def listener_env(self) -> dict[str, int]:
        """``{"<NAME>_<LISTENER>_PORT": default port}`` of each listener."""
        return {f"{self.env_prefix}{name.upper()}_PORT": port
                for name, port in self.listeners.items()}

    @property
    def module(self) -> str:
        return f"healthflow.{self.name}"

    @property
    def env_prefix(self) -> str:
        return f"{self.name.upper()}_"


def check(manifests: Iterable[ServiceManifest]) -> dict[str, ServiceManifest]:
    """The manifests by name, ordered by port.

    Raises:
        ValueError: two services share a name, a port (HTTP or listener) or a route
            prefix.
    """
    by_name: dict[str, ServiceManifest] = {}
    ports: dict[int, str] = {}
    prefixes: dict[str, str] = {}
    for manifest in sorted(manifests, key=lambda m: m.port):
        if manifest.name in by_name:
            raise ValueError(f"two services are called {manifest.name!r}")
        if manifest.port in ports:
            raise ValueError(f"{manifest.name} and {ports[manifest.port]} both use port "
                             f"{manifest.port}")
        for route in manifest.routes:
            if route.prefix in prefixes:
                raise ValueError(f"{manifest.name} and {prefixes[route.prefix]} both route "
                                 f"{route.prefix}")
            prefixes[route.prefix] = manifest.name
        by_name[manifest.name] = manifest
        ports[manifest.port] = manifest.name
    for manifest in by_name.values():
        for port in manifest.listeners.values():
            if port in ports:
                raise ValueError(f"{manifest.name} and {ports[port]} both use port {port}")
            ports[port] = manifest.name
    return by_name


def load_manifests() -> dict[str, ServiceManifest]:
    """Every installed service's manifest (entry points :data:`ENTRY_POINT_GROUP`), by name,
    ordered by port."""
    found = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        manifest = point.load()
        if not isinstance(manifest, ServiceManifest) or manifest.name != point.name:
            raise ValueError(f"entry point {point.name} = {point.value} is not the "
                             f"ServiceManifest of a service called {point.name!r}")
        found.append(manifest)
    return check(found)
