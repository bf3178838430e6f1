"""``python -m healthflow.notification``: serve the notification service."""

from __future__ import annotations

from healthflow.common.http import serve
from healthflow.common.settings import load_settings
from healthflow.notification.app import create_app
from healthflow.notification.settings import Settings


def main() -> None:
    settings = load_settings(Settings)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
