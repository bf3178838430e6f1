"""``python -m healthflow.devkit.compose``: regenerate the services part of
``docker-compose.yml`` from the installed services' manifests (``make docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

from healthflow.common.topology import GATEWAY_PORT, SERVICES
from healthflow.devkit.scaffold import write_compose


def main() -> int:
    changed = write_compose(Path("docker-compose.yml"), SERVICES.values(), GATEWAY_PORT)
    print("docker-compose.yml " + ("regenerated" if changed else "is current"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
