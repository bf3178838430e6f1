"""``python -m healthflow.doctor``: serve the doctor service."""

from __future__ import annotations

from healthflow.common.http import serve
from healthflow.common.settings import load_settings
from healthflow.doctor.app import create_app
from healthflow.doctor.settings import Settings


def main() -> None:
    settings = load_settings(Settings)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
