"""``python -m healthflow.audit``: serve the audit service."""

from __future__ import annotations

from healthflow.audit.app import create_app
from healthflow.audit.settings import Settings
from healthflow.common.http import serve
from healthflow.common.settings import load_settings


def main() -> None:
    settings = load_settings(Settings)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
