"""Backends for the storage contract suite: SQLite always, MongoDB through a stand-in or a real server.

The stand-in (tests/mongo_stand_in.py) is mongomock-ng answering as a replica set, with
transactions and conflicts as a MongoDB 7 server reports them; it is not a MongoDB. Its
test ids say ``mongo-stand-in``. Threaded tests run on SQLite and, when
``KUNJUNG_TEST_MONGO_URI`` names a server, on real MongoDB (docs/design.md §6).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pymongo
import pytest
from backends import COLLECTIONS, REAL_MONGO, STAND_IN
from mongo_stand_in import StandIn

from server.storage import Store, open_store


@dataclass
class Backend:
    """How to open (and reopen) one backend."""

    name: str
    open: Callable[[], Store]
    cleanup: Callable[[], None] = lambda: None


def _make_backend(name: str, tmp_path) -> Backend:
    if name == "sqlite":
        url = f"sqlite:///{tmp_path}/kunjung.db"
        return Backend(name, lambda: open_store(url, COLLECTIONS))
    if name == "mongo-real":
        client = pymongo.MongoClient(REAL_MONGO)
        db = f"kunjung_test_{uuid.uuid4().hex[:8]}"
        return Backend(name, lambda: open_store(REAL_MONGO, COLLECTIONS, client=client, database=db),
                       cleanup=lambda: client.drop_database(db))
    stand_in = StandIn()
    return Backend(name, lambda: open_store("mongodb://stand-in/kunjung", COLLECTIONS, client=stand_in))


ALL = ["sqlite", STAND_IN] + (["mongo-real"] if REAL_MONGO else [])
# Backends with multi-document transactions across sessions (the stand-in emulates them).
TRANSACTIONAL = ["sqlite", STAND_IN] + (["mongo-real"] if REAL_MONGO else [])
ATOMIC = ["sqlite"] + (["mongo-real"] if REAL_MONGO else [])
ON_DISK = ATOMIC


def _store_fixture(request, tmp_path) -> Iterator[tuple[Backend, Store]]:
    backend = _make_backend(request.param, tmp_path)
    opened = backend.open()
    opened.ensure_schema()
    yield backend, opened
    opened.close() if backend.name == "sqlite" else None
    backend.cleanup()


@pytest.fixture(params=ALL)
def backend_store(request, tmp_path):
    yield from _store_fixture(request, tmp_path)


@pytest.fixture(params=TRANSACTIONAL)
def transactional_backend_store(request, tmp_path):
    """Backends whose units of work roll back as a whole (the stand-in included)."""
    yield from _store_fixture(request, tmp_path)


@pytest.fixture
def transactional_store(transactional_backend_store) -> Store:
    return transactional_backend_store[1]


@pytest.fixture(params=ATOMIC)
def atomic_backend_store(request, tmp_path):
    """Backends atomic across threads and with real transactions (not the stand-in)."""
    yield from _store_fixture(request, tmp_path)


@pytest.fixture(params=ON_DISK)
def disk_backend_store(request, tmp_path):
    """Backends whose data outlives the process (not the in-memory stand-in)."""
    yield from _store_fixture(request, tmp_path)


@pytest.fixture
def store(backend_store) -> Store:
    return backend_store[1]


@pytest.fixture
def atomic_store(atomic_backend_store) -> Store:
    return atomic_backend_store[1]
