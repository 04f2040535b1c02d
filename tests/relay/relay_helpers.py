"""A central server and village halls in one process: apps on their own stores, linked by Flask test clients."""

from __future__ import annotations

from typing import Any

from http_helpers import TEST_SECRET, login

from server import create_app
from server.client.transport import FlaskTransport, Reply
from server.relay.node import hall_node, init_hall
from server.store import get_store, raw_store

SKEW_MS = 300_000


def node_app(tmp_path, name: str, **overrides: Any):
    config = {"DATABASE_URL": f"sqlite:///{tmp_path}/{name}.db", "SECRET_KEY": f"{TEST_SECRET}-{name}",
              "SECRET_KEY_FILE": str(tmp_path / f"{name}.secret"), "LOAD_LIBRARY_FORMS": False, "TESTING": True,
              "PASSWORD_HASH_MEMORY_KIB": 1024, "PASSWORD_HASH_TIME_COST": 1, "RELAY_BACKGROUND": False}
    config.update(overrides)
    return create_app(config)


class Link:
    """An HTTP transport to an in-process app that can be cut: while ``down``, or after ``cut_after``
    more requests, every request fails as a dropped connection would."""

    def __init__(self, app: Any):
        self.inner = FlaskTransport(app)
        self.name = "link"
        self.down = False
        self.cut_after: int | None = None  # requests that still get through
        self.lose_reply_of: str | None = None  # "METHOD path": delivered once, its answer lost
        self.sent = 0

    def send(self, method: str, path: str, **kwargs: Any) -> Reply:
        if self.cut_after is not None:
            if self.cut_after <= 0:
                self.down = True
            self.cut_after -= 1
        if self.down:
            raise ConnectionResetError("the hall's link is down")
        self.sent += 1
        reply = self.inner.send(method, path, **kwargs)
        if self.lose_reply_of == f"{method} {path}":
            self.lose_reply_of = None
            raise ConnectionResetError("the link dropped before the answer arrived")
        return reply


def make_credential(central, name: str, villages: list[str]) -> str:
    client = central.test_client()
    admin = login(client, "admin")
    response = client.post("/api/v1/relay/halls", json={"name": name, "villages": villages}, headers=admin)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["credential"]


def make_hall(tmp_path, central, name: str, villages: list[str], **overrides: Any):
    """A hall app set up against ``central`` through a cuttable link; returns (app, link)."""
    hall = node_app(tmp_path, name, **overrides)
    link = Link(central)
    token = make_credential(central, name, villages)
    with hall.app_context():
        init_hall(get_store(hall), "http://central.test", token, skew_bound_ms=SKEW_MS, transport=link)
    return hall, link


def sync_round(hall, link, wall=None):
    with hall.app_context():
        node = hall_node(get_store(hall), skew_bound_ms=SKEW_MS, transport=link)
        if wall is not None:
            node.wall = wall
        return node.round()


def close(*apps: Any) -> None:
    for application in apps:
        raw_store(application).close()
