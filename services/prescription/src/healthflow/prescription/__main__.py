"""``python -m healthflow.prescription``: serve the prescription service."""

from healthflow.common.http import serve
from healthflow.common.settings import load_settings
from healthflow.prescription.app import create_app
from healthflow.prescription.settings import Settings

if __name__ == "__main__":
    settings = load_settings(Settings)
    serve(create_app(settings), settings)
