"""Shared fixtures: an application on a fresh embedded store, and its test client."""

from __future__ import annotations

import os

import pytest
from http_helpers import make_app, make_mongo_stand_in_app, make_user

from server.storage.base import STRICT_QUERIES_ENV
from server.store import raw_store

# Every read the suite makes must be a declared query with its index (server/store.py).
os.environ[STRICT_QUERIES_ENV] = "1"
# The CLI speaks the shell's language; the suite asserts English unless a test asks for another.
os.environ["KUNJUNG_LANG"] = "en"


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


@pytest.fixture(params=["sqlite", "mongo-stand-in[mongomock-ng]"])
def backend_app(request, tmp_path):
    """The app on each backend; for HTTP scenarios that must hold on both (not threaded ones)."""
    maker = make_app if request.param == "sqlite" else make_mongo_stand_in_app
    application = maker(tmp_path)
    yield application
    raw_store(application).close()


@pytest.fixture
def app(tmp_path):
    application = make_app(tmp_path)
    yield application
    raw_store(application).close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def users(app):
    """An admin, a supervisor of kecamatan 32.04.05, and two officers in different villages."""
    make_user(app, "admin", "admin")
    make_user(app, "supervisor", "supervisor", ["32.04.05"])
    make_user(app, "ani", "officer", ["32.04.05.2001"])
    make_user(app, "budi", "officer", ["32.04.06.2001"])
    return ["admin", "supervisor", "ani", "budi"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """KUNJUNG_* variables for commands run through the CLI, on a store in this test's directory."""
    values = {
        "KUNJUNG_DATABASE_URL": f"sqlite:///{tmp_path}/live.db",
        "KUNJUNG_SECRET_KEY_FILE": str(tmp_path / "secret_key"),
        "KUNJUNG_LOAD_LIBRARY_FORMS": "false",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values
