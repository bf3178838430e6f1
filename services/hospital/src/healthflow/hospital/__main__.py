"""``python -m healthflow.hospital``: serve the hospital service."""

from __future__ import annotations

from healthflow.common.http import serve
from healthflow.common.settings import load_settings
from healthflow.hospital.app import create_app
from healthflow.hospital.settings import Settings


def main() -> None:
    settings = load_settings(Settings)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
