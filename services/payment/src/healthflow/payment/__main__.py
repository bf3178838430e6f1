"""``python -m healthflow.payment``: serve the payment service."""

from healthflow.common.http import serve
from healthflow.common.settings import load_settings
from healthflow.payment.app import create_app
from healthflow.payment.settings import Settings

if __name__ == "__main__":
    settings = load_settings(Settings)
    serve(create_app(settings), settings)
