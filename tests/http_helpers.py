"""Helpers for HTTP tests: users made through the domain code, and logging in through HTTP."""

from __future__ import annotations

from server import create_app
from server.security.passwords import passwords
from server.store import get_store
from server.users import create_user

PASSWORD = "correct horse battery"
TEST_SECRET = "kunjung-test-secret-that-is-long-enough-0123456789"


def make_app(tmp_path, **overrides):
    """An app on a fresh embedded store in ``tmp_path``, with the suite's settings and ``overrides``."""
    config = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/kunjung.db",
        "SECRET_KEY": TEST_SECRET,
        "SECRET_KEY_FILE": str(tmp_path / "secret_key"),
        "LOAD_LIBRARY_FORMS": False,
        "TESTING": True,
        # cheap hashing keeps the suite fast; production uses argon2id at 64 MiB
        "PASSWORD_HASH_MEMORY_KIB": 1024,
        "PASSWORD_HASH_TIME_COST": 1,
    }
    config.update(overrides)
    return create_app(config)


def make_mongo_stand_in_app(tmp_path, stand_in=None, **overrides):
    """An app on the MongoDB backend over the stand-in, not a MongoDB (docs/design.md §6); pass
    ``stand_in`` (a mongo_stand_in.StandIn) to inject faults into it."""
    from mongo_stand_in import STAND_IN_URL, stand_in_store

    return make_app(tmp_path, STORE=stand_in_store(stand_in), DATABASE_URL=STAND_IN_URL, **overrides)


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
