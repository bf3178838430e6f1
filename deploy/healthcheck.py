"""Container health check: exit 0 when this container's ``/livez`` answers 200 within 3 s.

The port is found the way the service's settings find it: ``<SERVICE>_PORT``,
then ``PORT``, then the service's default from :mod:`healthflow.common.topology`.
Standard library only apart from that table, so it costs one short process.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def port(service: str) -> int:
    for name in (f"{service.upper()}_PORT", "PORT"):
        if os.environ.get(name):
            return int(os.environ[name])
    from healthflow.common.topology import GATEWAY_PORT, SERVICES

    return GATEWAY_PORT if service == "gateway" else SERVICES[service].port


def main() -> int:
    service = os.environ["SERVICE"]
    url = f"http://127.0.0.1:{port(service)}/livez"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
