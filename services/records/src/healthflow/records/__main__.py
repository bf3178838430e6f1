"""``python -m healthflow.records``: serve the records service."""

from healthflow.common.http import serve
from healthflow.common.settings import load_settings
from healthflow.records.app import create_app
from healthflow.records.settings import Settings

if __name__ == "__main__":
    settings = load_settings(Settings)
    serve(create_app(settings), settings)
