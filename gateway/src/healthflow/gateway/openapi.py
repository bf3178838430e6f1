"""One OpenAPI 3.1 document for the whole platform, merged from the services' own.

Each upstream's ``/openapi.json`` is fetched (concurrently, ``health_timeout``
seconds each) and merged:

* only paths the gateway routes to that upstream are kept (a service's
  internal routes never leak into the public document);
* ``components`` (schemas, responses, parameters, …) are merged by name; a name
  two services define differently is renamed ``<Service>__<Name>`` in the
  second one and every ``$ref`` of that service is rewritten to match;
  identical definitions are kept once;
* every operation's security requirement is rewritten to the one platform
  scheme, OAuth2 password flow with ``tokenUrl`` ``/api/v1/auth/token``
  (so Swagger UI's Authorize button logs in through the gateway);
* an upstream that does not answer is left out and named in the document's
  ``description``; the gateway's own routes are added.

The result is cached for ``openapi_cache_seconds`` (short: a redeployed service
shows up quickly, a burst of doc loads costs one fan-out); a document missing a
service is cached for at most :data:`INCOMPLETE_TTL` seconds.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from healthflow.gateway.routes import RouteTable

SECURITY_SCHEME = "OAuth2PasswordBearer"
TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 - a URL, not a secret
INCOMPLETE_TTL = 5.0  # seconds an incomplete document is cached (at most cache_seconds)
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value in renames:
                out[key] = renames[value]
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def merge_documents(
    documents: Mapping[str, Mapping[str, Any]],
    table: RouteTable,
    *,
    missing: Iterable[str] = (),
    extra_paths: Mapping[str, Any] | None = None,
    title: str = "HealthFlow API",
    version: str = "1.0.0",
) -> dict[str, Any]:
    """Merge ``documents`` (service name → its OpenAPI document) into one.

    ``missing`` names the services that could not be fetched (noted in the
    description); ``extra_paths`` are the gateway's own path items.
    """
    paths: dict[str, Any] = {}
    components: dict[str, dict[str, Any]] = {}
    by_definition: dict[str, dict[str, str]] = {}  # kind -> canonical JSON -> name
    tags: dict[str, dict[str, Any]] = {}
    for service, original in documents.items():
        doc = copy.deepcopy(dict(original))
        renames = _plan_renames(service, doc, components, by_definition)
        doc = _rewrite_refs(doc, renames)
        _add_components(doc, renames, components, by_definition)
        paths.update(_routed_paths(service, doc, table, tags))
    for path, item in (extra_paths or {}).items():
        paths.setdefault(path, item)
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "oauth2",
        "flows": {"password": {"tokenUrl": TOKEN_URL, "scopes": {}}},
        "description": "Log in with email and password; send the access token as "
                       "`Authorization: Bearer <token>`.",
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": _description(missing)},
        "paths": dict(sorted(paths.items())),
        "components": components,
        "tags": sorted(tags.values(), key=lambda t: t["name"]),
    }


def _merged_kinds(doc: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """``doc``'s component kinds that are merged by name (security schemes are not:
    the platform has its one)."""
    for kind, entries in (doc.get("components") or {}).items():
        if kind != "securitySchemes" and isinstance(entries, dict):
            yield kind, entries


def _plan_renames(service: str, doc: Mapping[str, Any], components: dict[str, dict[str, Any]],
                  by_definition: dict[str, dict[str, str]]) -> dict[str, str]:
    """The ``$ref`` rewrites ``service``'s document needs: each component whose name is
    taken by a different definition moves to ``<Service>__<Name>``, or to the name of an
    identical definition merged earlier."""
    renames: dict[str, str] = {}
    for kind, entries in _merged_kinds(doc):
        merged = components.setdefault(kind, {})
        known = by_definition.setdefault(kind, {})
        for name, definition in entries.items():
            canonical = _canonical(definition)
            if name not in merged or _canonical(merged[name]) == canonical:
                continue
            # a different definition under a taken name: reuse an identical one
            # merged earlier under another name, else take the service's name
            target = known.get(canonical) or f"{service.capitalize()}__{name}"
            renames[f"#/components/{kind}/{name}"] = f"#/components/{kind}/{target}"
    return renames


def _add_components(doc: Mapping[str, Any], renames: Mapping[str, str],
                    components: dict[str, dict[str, Any]],
                    by_definition: dict[str, dict[str, str]]) -> None:
    """Add ``doc``'s components (refs already rewritten) under their final names; a name
    already merged keeps its first definition."""
    for kind, entries in _merged_kinds(doc):
        merged = components.setdefault(kind, {})
        known = by_definition.setdefault(kind, {})
        for name, definition in entries.items():
            ref = f"#/components/{kind}/{name}"
            target = renames.get(ref, ref).rsplit("/", 1)[1]
            if target not in merged:
                merged[target] = definition
                known.setdefault(_canonical(definition), target)


def _routed_paths(service: str, doc: Mapping[str, Any], table: RouteTable,
                  tags: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The path items of ``doc`` that the gateway routes to ``service``, each secured
    operation switched to the platform scheme and tagged (the service's name by
    default); the tags used are recorded in ``tags``."""
    paths: dict[str, Any] = {}
    for path, item in (doc.get("paths") or {}).items():
        route = table.match(path)
        if route is None or route.service != service:
            continue
        item = dict(item)
        for method, operation in item.items():
            if method not in HTTP_METHODS or not isinstance(operation, dict):
                continue
            if operation.get("security"):
                operation["security"] = [{SECURITY_SCHEME: []}]
            operation.setdefault("tags", [service])
            for tag in operation["tags"]:
                tags.setdefault(tag, {"name": tag})
        paths[path] = item
    return paths


def _description(missing: Iterable[str]) -> str:
    """The document's description, naming the services left out (sorted), if any."""
    description = (
        "Every HealthFlow service behind one gateway. Errors are RFC 9457 "
        "problem+json; responses carry the IETF `RateLimit` and `RateLimit-Policy` "
        "fields; every request gets an `X-Request-ID`."
    )
    left_out = sorted(missing)
    if left_out:
        description += (
            "\n\n**Incomplete:** these services did not answer and are left out: "
            + ", ".join(left_out) + "."
        )
    return description


class OpenAPIAggregator:
    """Fetches, merges and caches the platform document (see the module doc)."""

    def __init__(self, client: httpx.AsyncClient, upstreams: Mapping[str, str],
                 table: RouteTable, *, cache_seconds: float, timeout: float,
                 extra_paths: Mapping[str, Any] | None = None) -> None:
        self.client = client
        self.upstreams = upstreams
        self.table = table
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self.extra_paths = extra_paths or {}
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0
        self._lock = asyncio.Lock()

    async def _fetch(self, service: str) -> dict[str, Any] | None:
        try:
            response = await self.client.get(f"{self.upstreams[service]}/openapi.json",
                                             timeout=self.timeout)
            if response.status_code != 200:
                return None
            doc = response.json()
            return doc if isinstance(doc, dict) else None
        except (httpx.HTTPError, ValueError):
            return None

    async def document(self) -> dict[str, Any]:
        """The merged document (from cache when younger than ``cache_seconds``)."""
        async with self._lock:
            if self._cached is not None and time.monotonic() - self._cached_at < self.cache_seconds:
                return self._cached
            services = self.table.services()
            fetched = await asyncio.gather(*(self._fetch(s) for s in services))
            documents = {s: d for s, d in zip(services, fetched, strict=True) if d is not None}
            missing = [s for s, d in zip(services, fetched, strict=True) if d is None]
            self._cached = merge_documents(documents, self.table, missing=missing,
                                           extra_paths=self.extra_paths)
            # an incomplete document is kept briefly, so a service that comes back shows up
            age_credit = 0.0 if not missing else max(0.0, self.cache_seconds - INCOMPLETE_TTL)
            self._cached_at = time.monotonic() - age_credit
            return self._cached
