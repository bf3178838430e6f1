"""``python -m healthflow.paramedic``: serve the paramedic service."""

from healthflow.common.http import serve
from healthflow.common.settings import load_settings
from healthflow.paramedic.app import create_app
from healthflow.paramedic.settings import Settings

if __name__ == "__main__":
    settings = load_settings(Settings)
    serve(create_app(settings), settings)
