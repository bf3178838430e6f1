"""``python -m healthflow.emergency``: serve the emergency service."""

from healthflow.common.http import serve
from healthflow.common.settings import load_settings
from healthflow.emergency.app import create_app
from healthflow.emergency.settings import Settings

if __name__ == "__main__":
    settings = load_settings(Settings)
    serve(create_app(settings), settings)
