"""Which services make up the platform, where each listens by default.

Read from the installed services' manifests (:mod:`healthflow.common.manifest`):
the local platform runner (``make run``), the gateway's upstream defaults, the
event catalog and the compose and Kubernetes checks use this table. Ports are
the services' internal ports; clients only ever reach the gateway (8000).
"""

from __future__ import annotations

from healthflow.common.manifest import ServiceManifest, load_manifests

GATEWAY_PORT = 8000

SERVICES: dict[str, ServiceManifest] = load_manifests()
"""Every installed service by name, ordered by port."""
