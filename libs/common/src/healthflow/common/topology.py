"""Which services make up the platform, where each listens by default.

One table read by the local platform runner (``make run``), the gateway's
upstream defaults and the compose file test. Ports are the services' internal
ports; clients only ever reach the gateway (8000).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    port: int

    @property
    def module(self) -> str:
        return f"healthflow.{self.name}"

    @property
    def env_prefix(self) -> str:
        return f"{self.name.upper()}_"


GATEWAY_PORT = 8000

SERVICES: dict[str, ServiceInfo] = {
    s.name: s
    for s in (
        ServiceInfo("auth", 8101),
        ServiceInfo("audit", 8102),
        ServiceInfo("hospital", 8103),
        ServiceInfo("doctor", 8104),
        ServiceInfo("patient", 8105),
        ServiceInfo("appointment", 8106),
        ServiceInfo("notification", 8107),
    )
}
