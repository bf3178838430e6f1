"""The headers the gateway forwards upstream and relays back.

Headers (RFC 9110 § 7.6.1; RFC 7239's de-facto ``X-Forwarded-*`` siblings):

* hop-by-hop fields and any field named by ``Connection`` are dropped both ways;
* client-supplied identity fields (:data:`IDENTITY_HEADERS`, anything starting
  ``X-HealthFlow-Identity``) are dropped; the verified ``X-User-Id`` and
  ``X-User-Roles`` (comma-separated) are added; ``Authorization`` is forwarded
  as received so the service verifies the token itself;
* ``X-Request-ID`` is the request's id (the client's when acceptable, else a new
  UUID), echoed to the client; the client's ``traceparent``/``tracestate`` give way
  to those of the gateway's CLIENT span, one per attempt, named by the method (same trace);
* ``X-Forwarded-For`` gets the client address, ``X-Forwarded-Proto`` and
  ``X-Forwarded-Host`` what the client used.
"""

from __future__ import annotations

from healthflow.common.auth import Principal

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})
IDENTITY_HEADERS = frozenset({
    "x-user-id", "x-user-roles", "x-user-permissions", "x-forwarded-user",
})
IDENTITY_PREFIX = "x-healthflow-identity"
# Set by the gateway itself, never taken from the client.
GATEWAY_SET = frozenset({
    "host", "x-request-id", "traceparent", "tracestate", "x-forwarded-for",
    "x-forwarded-proto", "x-forwarded-host", "forwarded", "content-length", "expect",
})
RESPONSE_DROP = HOP_BY_HOP | {"x-request-id"}


def client_address(scope_client: tuple[str, int] | None, forwarded_for: str | None,
                   trusted_hops: int) -> str:
    """The caller's IP: the socket peer, or with ``trusted_hops`` proxies in front
    the address that the outermost trusted proxy appended to ``X-Forwarded-For``."""
    peer = scope_client[0] if scope_client else "unknown"
    if trusted_hops <= 0 or not forwarded_for:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    if len(hops) >= trusted_hops:
        return hops[-trusted_hops]
    return hops[0] if hops else peer


def forward_headers(
    raw: list[tuple[bytes, bytes]],
    *,
    principal: Principal | None,
    peer: str,
    scheme: str,
    host: str | None,
    request_id: str,
    trusted_hops: int,
) -> list[tuple[str, str]]:
    """The header list sent upstream (see the module doc for the rules).

    ``peer`` is the socket address the request came from. With ``trusted_hops`` > 0
    the client's ``X-Forwarded-For`` chain is kept and ``peer`` appended (RFC 7239
    § 5.2 semantics); with 0 the chain is dropped and replaced by ``peer``.
    """
    connection_named: set[str] = set()
    prior_xff: str | None = None
    for key, value in raw:
        name = key.decode("latin-1").lower()
        if name == "connection":
            connection_named |= {
                t.strip().lower() for t in value.decode("latin-1").split(",") if t.strip()
            }
        elif name == "x-forwarded-for":
            prior_xff = value.decode("latin-1")
    out: list[tuple[str, str]] = []
    for key, value in raw:
        name = key.decode("latin-1").lower()
        if (name in HOP_BY_HOP or name in connection_named or name in IDENTITY_HEADERS
                or name.startswith(IDENTITY_PREFIX) or name in GATEWAY_SET):
            continue
        out.append((name, value.decode("latin-1")))
    if principal is not None:
        out.append(("x-user-id", principal.subject))
        out.append(("x-user-roles", ",".join(sorted(principal.roles))))
    forwarded_for = f"{prior_xff}, {peer}" if trusted_hops > 0 and prior_xff else peer
    out.append(("x-forwarded-for", forwarded_for))
    out.append(("x-forwarded-proto", scheme))
    if host:
        out.append(("x-forwarded-host", host))
    out.append(("x-request-id", request_id))
    return out


def response_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Upstream response headers minus hop-by-hop ones and the upstream's request id."""
    connection_named: set[bytes] = set()
    for key, value in raw:
        if key.lower() == b"connection":
            connection_named |= {t.strip().lower() for t in value.split(b",") if t.strip()}
    return [
        (key.lower(), value)
        for key, value in raw
        if key.lower().decode("latin-1") not in RESPONSE_DROP
        and key.lower() not in connection_named
    ]
