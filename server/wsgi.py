"""The WSGI entry point for gunicorn: ``gunicorn server.wsgi:app``."""

from . import create_app
from .relay import start_background_relay

app = create_app()
start_background_relay(app)  # at a village hall: exchange with upstream in the background
