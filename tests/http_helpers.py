"""Helpers for HTTP tests: users made through the domain code, and logging in through HTTP."""

from __future__ import annotations

from server.security.passwords import passwords
from server.store import get_store
from server.users import create_user

PASSWORD = "correct horse battery"
TEST_SECRET = "kunjung-test-secret-that-is-long-enough-0123456789"


def make_user(app, username, role, villages=(), password=PASSWORD):
    """Create a user straight through the domain code (as the CLI does)."""
    with app.app_context():
        create_user(get_store(), passwords(), username, password, role, list(villages), actor="test")


def login(client, username, password=PASSWORD, device_id=None):
    """Log in through HTTP and return the Authorization header for the access token."""
    body = {"username": username, "password": password}
    if device_id:
        body["device_id"] = device_id
    response = client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}
