"""``python -m healthflow.devkit``: the local platform runner (``healthflow-run``)."""

from __future__ import annotations

import sys

from healthflow.devkit.orchestrator import main

if __name__ == "__main__":
    sys.exit(main())
