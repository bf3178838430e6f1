"""``python -m healthflow.teleconference``: serve the teleconference service."""

from healthflow.common.http import serve
from healthflow.common.settings import load_settings
from healthflow.teleconference.app import create_app
from healthflow.teleconference.settings import Settings

if __name__ == "__main__":
    settings = load_settings(Settings)
    serve(create_app(settings), settings)
