"""``python -m healthflow.xray``: serve the xray service."""

from healthflow.common.http import serve
from healthflow.common.settings import load_settings
from healthflow.xray.app import create_app
from healthflow.xray.settings import Settings

if __name__ == "__main__":
    settings = load_settings(Settings)
    serve(create_app(settings), settings)
