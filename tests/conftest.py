"""Shared fixtures: an application on a fresh embedded store, and its test client."""

from __future__ import annotations

import pytest

from server import create_app
from server.store import raw_store

TEST_SECRET = "kunjung-test-secret-that-is-long-enough-0123456789"


def make_app(tmp_path, **overrides):
    config = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/kunjung.db",
        "SECRET_KEY": TEST_SECRET,
        "SECRET_KEY_FILE": str(tmp_path / "secret_key"),
        "LOAD_LIBRARY_FORMS": False,
        "TESTING": True,
    }
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app_factory(tmp_path):
    """``app_factory(**settings)``: another app on this test's directory, closed afterwards."""
    made = []

    def factory(**overrides):
        made.append(make_app(tmp_path, **overrides))
        return made[-1]

    yield factory
    for application in made:
        raw_store(application).close()


@pytest.fixture
def app(tmp_path):
    application = make_app(tmp_path)
    yield application
    raw_store(application).close()


@pytest.fixture
def client(app):
    return app.test_client()
