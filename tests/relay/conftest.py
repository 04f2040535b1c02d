"""The central server the relay tests run a hall against: an admin, a supervisor, two officers, the household form."""

from __future__ import annotations

import pytest
from http_helpers import make_user
from relay_helpers import close, node_app
from sync_helpers import OTHER_VILLAGE, VILLAGE, publish_household_form


@pytest.fixture
def central(tmp_path):
    app = node_app(tmp_path, "central")
    make_user(app, "admin", "admin")
    make_user(app, "supervisor", "supervisor", ["32.04.05"])
    make_user(app, "ani", "officer", [VILLAGE])
    make_user(app, "budi", "officer", [OTHER_VILLAGE])
    publish_household_form(app.test_client())
    yield app
    close(app)
