"""``python -m healthflow.appointment``: serve the appointment service."""

from healthflow.appointment.app import create_app
from healthflow.appointment.settings import Settings
from healthflow.common.http import serve
from healthflow.common.settings import load_settings

if __name__ == "__main__":
    settings = load_settings(Settings)
    serve(create_app(settings), settings)
