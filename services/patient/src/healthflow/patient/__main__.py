"""``python -m healthflow.patient``: serve the patient service."""

from healthflow.common.http import serve
from healthflow.common.settings import load_settings
from healthflow.patient.app import create_app
from healthflow.patient.settings import Settings

if __name__ == "__main__":
    settings = load_settings(Settings)
    serve(create_app(settings), settings)
