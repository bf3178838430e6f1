"""The route table: which path prefix goes to which service, under which policy.

Each service declares its prefixes in its manifest (:mod:`healthflow.common.manifest`);
this module turns them into :class:`Route` objects and holds the policy groups.

A request is matched to the :class:`Route` with the longest prefix that is the
whole path or a ``/``-bounded prefix of it (``/api/v1/users`` matches
``/api/v1/users`` and ``/api/v1/users/42``, never ``/api/v1/usersX``). The
route names its upstream service and its :class:`Policy` group; within the
route, :meth:`Route.policy_for` gives one method another group on the prefix
itself (``methods``: ``POST /api/v1/imaging/studies`` is ``upload``, everything
below it ``default``) or on a sub-path pattern below it (``paths``, matched
segment by segment, ``*`` or ``{name}`` standing for exactly one segment:
``PUT /api/v1/expenses/{id}/receipt`` is ``document``, its ``GET``, the entry
itself and ``…/receipt/x`` stay ``default``). A pattern never picks the route: a
longer prefix declared by any service still wins. A path that matches no route is
answered 404 problem+json by the gateway itself.

Policies (numbers are defaults; ``GATEWAY_POLICY_OVERRIDES`` changes any field):

==========  ===========  ===========  ===========  =======  ========
group       auth         per subject  per IP       timeout  max body
==========  ===========  ===========  ===========  =======  ========
token       public       —            10/minute    10 s     64 KiB
register    public       —            5/minute     10 s     64 KiB
refresh     public       —            30/minute    10 s     64 KiB
jwks        public       —            300/minute   5 s      0
account     token        120/minute   1200/minute  10 s     64 KiB
audit       audit:read   60/minute    600/minute   30 s     64 KiB
default     token        300/minute   3000/minute  15 s     1 MiB
upload      token        120/minute   3000/minute  300 s    512 MiB
document    token        120/minute   3000/minute  60 s     25 MiB
edge        public       —            120/minute   10 s     0
==========  ===========  ===========  ===========  =======  ========

``token`` serves ``/api/v1/auth/token`` (login), ``account`` the rest of
``/api/v1/auth`` and ``/api/v1/users``; ``audit`` needs a token holding
``audit:read`` (compliance officers, admins); ``upload`` is ``POST
/api/v1/imaging/studies`` and ``POST /api/v1/dicomweb/studies`` (STOW-RS) alone (X-ray
images streamed through); ``document`` is a single document or photo of a few
MiB, e.g. ``PUT /api/v1/expenses/{id}/receipt`` and ``PUT
/api/v1/incomes/{id}/receipt`` (a scanned or photographed receipt). Bodies over
64 KiB are streamed to the upstream whatever the group
(:data:`healthflow.gateway.proxy.SMALL_BODY`), so a large limit costs no
memory. ``edge`` covers what the gateway
answers itself (OpenAPI, docs, status page) and unknown paths. Windows are
moving windows (see :mod:`healthflow.gateway.ratelimit`); ``stream_timeout``
is 3600 s everywhere. ``/livez``, ``/readyz`` and ``/metrics`` are probes: never
limited. ``timeout`` is how long the upstream may stay silent (no byte of the
response) before the gateway answers 504; ``stream_timeout`` replaces it while a
Server-Sent Events or WebSocket stream is open.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from healthflow.common.manifest import ServiceManifest, check_pattern, path_matches
from healthflow.common.permissions import Permission
from healthflow.common.topology import SERVICES

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Policy:
    """What the edge enforces for one route group.

    ``ip_limit``/``subject_limit`` use the ``limits`` notation (``"10/minute"``);
    ``None`` disables that limit. Durations are seconds, sizes bytes.
    """

    name: str
    auth_required: bool = True
    permission: str | None = None
    subject_limit: str | None = "300/minute"
    ip_limit: str | None = "3000/minute"
    timeout: float = 15.0
    stream_timeout: float = 3600.0
    max_body_bytes: int = 1 * MIB

    def with_overrides(self, overrides: Mapping[str, Any]) -> Policy:
        """A copy with ``overrides`` applied.

        Raises:
            ValueError: an override names no field of :class:`Policy`.
        """
        known = {f.name for f in dataclasses.fields(self)} - {"name"}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown policy field(s) for {self.name!r}: {sorted(unknown)}")
        return dataclasses.replace(self, **dict(overrides))


POLICIES: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy("token", auth_required=False, subject_limit=None, ip_limit="10/minute",
               timeout=10.0, max_body_bytes=64 * KIB),
        Policy("register", auth_required=False, subject_limit=None, ip_limit="5/minute",
               timeout=10.0, max_body_bytes=64 * KIB),
        Policy("refresh", auth_required=False, subject_limit=None, ip_limit="30/minute",
               timeout=10.0, max_body_bytes=64 * KIB),
        Policy("jwks", auth_required=False, subject_limit=None, ip_limit="300/minute",
               timeout=5.0, max_body_bytes=0),
        # sending and checking one-time codes (notification's phone verification)
        Policy("verification", subject_limit="10/minute", ip_limit="300/minute",
               timeout=10.0, max_body_bytes=4 * KIB),
        Policy("account", subject_limit="120/minute", ip_limit="1200/minute", timeout=10.0,
               max_body_bytes=64 * KIB),
        Policy("audit", permission=str(Permission.AUDIT_READ), subject_limit="60/minute",
               ip_limit="600/minute", timeout=30.0, max_body_bytes=64 * KIB),
        Policy("default"),
        # file uploads (X-ray images): streamed through, so a large limit costs no memory
        Policy("upload", subject_limit="120/minute", timeout=300.0,
               max_body_bytes=512 * MIB),
        # one document or photo (a receipt): streamed through as uploads are
        Policy("document", subject_limit="120/minute", timeout=60.0,
               max_body_bytes=25 * MIB),
        Policy("edge", auth_required=False, subject_limit=None, ip_limit="120/minute",
               timeout=10.0, max_body_bytes=0),
    )
}


@dataclass(frozen=True)
class Route:
    """``prefix`` (a path, no trailing slash) is served by ``service`` under ``policy``.

    ``public`` names the methods that need no token here (the public directory,
    provider callbacks that carry their own signature); a token sent anyway is
    still verified and its identity forwarded, so the service can show more to
    its owner. ``methods`` and ``paths`` are the declaration's
    (:class:`healthflow.common.manifest.RouteDecl`): a method's group on the prefix
    itself, and per sub-path pattern below it.
    """

    prefix: str
    service: str
    policy: str = "default"
    public: frozenset[str] = frozenset()
    methods: Mapping[str, str] = field(default_factory=dict, hash=False)
    paths: Mapping[str, Mapping[str, str]] = field(default_factory=dict, hash=False)

    def is_public(self, method: str) -> bool:
        return method.upper() in self.public

    def policy_for(self, method: str, path: str) -> str:
        """The policy group of ``method`` on ``path`` (a path this route matches):
        ``methods``' for the prefix itself; below it, that of the first pattern of
        ``paths`` (in declaration order) matching the rest of the path and naming the
        method; ``policy`` otherwise."""
        method = method.upper()
        if path == self.prefix:
            return self.methods.get(method, self.policy)
        rest = path[len(self.prefix):]
        for pattern, methods in self.paths.items():
            if method in methods and path_matches(pattern, rest):
                return methods[method]
        return self.policy

    def check(self, known: Iterable[str]) -> None:
        """Refuse a declaration the table could not apply as written.

        Raises:
            ValueError: a policy group not in ``known``; a method that is not an
                upper-case token (``"PUT"``, not ``"put"`` or ``"PUT /x"``); a sub-path
                pattern :func:`healthflow.common.manifest.check_pattern` refuses or with
                no method.
        """
        known = set(known)
        maps = {"": self.methods, **self.paths}
        for pattern, methods in maps.items():
            if pattern:
                try:
                    check_pattern(pattern)
                except ValueError as exc:
                    raise ValueError(f"route {self.prefix}: {exc}") from None
                if not methods:
                    raise ValueError(f"route {self.prefix}: pattern {pattern} names no method")
            for method, policy in methods.items():
                if not (method.isascii() and method.isalpha() and method.isupper()):
                    raise ValueError(f"route {self.prefix}{pattern}: {method!r} is not a "
                                     "method (upper case, e.g. PUT)")
                if policy not in known:
                    raise ValueError(f"route {self.prefix}{pattern} names unknown policy "
                                     f"{policy}")
        if self.policy not in known:
            raise ValueError(f"route {self.prefix} names unknown policy {self.policy}")

    def matches(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")


def routes_of(manifests: Iterable[ServiceManifest]) -> tuple[Route, ...]:
    """The routes the services declare in their manifests, in manifest (port) order."""
    return tuple(Route(decl.prefix, manifest.name, decl.policy, decl.public, decl.methods,
                       decl.paths)
                 for manifest in manifests for decl in manifest.routes)


ROUTES: tuple[Route, ...] = routes_of(SERVICES.values())
"""Every route of every installed service (:mod:`healthflow.common.manifest`): the auth
service's token, sign-up, refresh and key routes, the audit log under ``audit``,
the public directory of verified hospitals and doctors (reads), the Twilio
callback (signed) and the VAPID key, X-ray and document uploads under ``upload``,
receipts under ``document``, and the rest under ``default``."""

PROBE_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
EDGE_POLICY = "edge"


class RouteTable:
    """Longest-prefix lookup over :data:`ROUTES` with the effective policies.

    Raises:
        ValueError: an override names an unknown group or field; a route names an
            unknown group, a malformed method or sub-path pattern (:meth:`Route.check`).
    """

    def __init__(
        self,
        routes: Iterable[Route] = ROUTES,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.declared = tuple(routes)
        self.routes = tuple(sorted(self.declared, key=lambda r: len(r.prefix), reverse=True))
        overrides = overrides or {}
        unknown = set(overrides) - set(POLICIES)
        if unknown:
            raise ValueError(f"policy overrides name unknown groups: {sorted(unknown)}")
        self.policies = {
            name: policy.with_overrides(overrides.get(name, {}))
            for name, policy in POLICIES.items()
        }
        for route in self.routes:
            route.check(self.policies)

    def match(self, path: str) -> Route | None:
        """The route serving ``path`` (the longest matching prefix), or ``None``."""
        for route in self.routes:
            if route.matches(path):
                return route
        return None

    def policy(self, name: str) -> Policy:
        return self.policies[name]

    def services(self) -> list[str]:
        """Every upstream named by a route, in declaration order."""
        return list(dict.fromkeys(route.service for route in self.declared))

    def prefixes_of(self, service: str) -> list[str]:
        return [r.prefix for r in self.routes if r.service == service]
