"""Where the platform may send a request whose URL a user gave us (server-side request
forgery guard, OWASP SSRF prevention).

A user-supplied URL (a Web Push endpoint, a future webhook) is acceptable when:

* its scheme is ``https`` (RFC 9110 § 4.2.2), unless the policy is a development
  one (``require_https=False``);
* its host is on the policy's allow-list: an entry ``push.example`` allows that
  host only, ``.example`` any host under it (never an IP literal unless listed);
* every address the host resolves to is a global unicast address
  (``ipaddress``'s ``is_global``: no loopback, RFC 1918/RFC 4193 private,
  link-local — the cloud metadata service 169.254.169.254 among them —, shared
  100.64/10, multicast, reserved or unspecified), IPv4-mapped IPv6 checked as its
  IPv4 address, plus the named metadata addresses of :data:`METADATA_ADDRESSES`.
  ``allow_private=True`` (development sinks on loopback only) lifts this rule.

:func:`check_url` applies all three when a URL is stored; :func:`check_addresses`
is for the moment of sending, on the addresses the HTTP client is about to
connect to (so that a name re-pointed at an internal address after the first
check — DNS rebinding — is refused too).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from healthflow.common.errors import UnprocessableContent

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services that some clouds place outside link-local space.
METADATA_ADDRESSES = frozenset({
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
})


class UnsafeURL(UnprocessableContent):
    """A user-supplied URL the platform will not call (422, ``problem: unsafe-url``)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, problem="unsafe-url")


@dataclass(frozen=True)
class OutboundPolicy:
    """Which URLs may be called: allowed hosts (``"host"`` or ``".suffix"``), HTTPS only,
    and whether non-global addresses are allowed (development only)."""

    allowed_hosts: Sequence[str]
    require_https: bool = True
    allow_private: bool = False

    def allows_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for entry in (e.lower().rstrip(".") for e in self.allowed_hosts):
            if host == entry or (entry.startswith(".") and host.endswith(entry)):
                return True
        return False


def unsafe_address(address: IPAddress) -> str | None:
    """Why ``address`` must not be called (``"loopback"``, ``"private"``…), or ``None``."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata service"
    for reason in ("loopback", "link_local", "private", "multicast", "unspecified",
                   "reserved"):
        if getattr(address, f"is_{reason}"):
            return reason.replace("_", "-")
    return None if address.is_global else "not global"


def check_addresses(host: str, addresses: Iterable[str], policy: OutboundPolicy) -> None:
    """Refuse when any of ``addresses`` (what ``host`` resolved to) is not global.

    Raises:
        UnsafeURL: naming the host and the kind of address (never a private value).
    """
    if policy.allow_private:
        return
    seen = False
    for text in addresses:
        seen = True
        reason = unsafe_address(ipaddress.ip_address(text.split("%", 1)[0]))
        if reason is not None:
            raise UnsafeURL(f"{host} resolves to a {reason} address; "
                            "only public push services can be called")
    if not seen:
        raise UnsafeURL(f"{host} does not resolve to any address")


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, as the HTTP client uses).

    Raises:
        UnsafeURL: the name does not resolve.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"{host} does not resolve ({type(exc).__name__})") from None
    return [str(info[4][0]) for info in infos]


async def check_url(url: str, policy: OutboundPolicy) -> str:
    """``url`` when the policy allows calling it (see the module doc); its host resolved
    now, through the system resolver.

    Raises:
        UnsafeURL: (422) not HTTPS, host not allowed, or resolving to a non-global address.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" and (policy.require_https or parts.scheme != "http"):
        raise UnsafeURL("the URL must use https")
    host = parts.hostname
    if not host or parts.username or parts.password:
        raise UnsafeURL("the URL must name a host and carry no user information")
    if not policy.allows_host(host):
        raise UnsafeURL(f"{host} is not an allowed push service host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    check_addresses(host, await resolve(host, port), policy)
    return url
