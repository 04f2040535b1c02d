"""Backends for the storage contract suite: SQLite always, MongoDB through a stand-in or a real server.

mongomock-ng is a stand-in, not a MongoDB: it is not atomic across threads and has no
transactions, so the threaded and rollback promises run on SQLite and, when
``KUNJUNG_TEST_MONGO_URI`` names a server, on real MongoDB (DESIGN.md §6).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from server.storage import CollectionSpec, Store, open_store

COLLECTIONS = [
    CollectionSpec("things", fields=("village", "kind", "size"),
                   indexes=(("village",), ("kind", "size"), ("village", "seq")), tracked=True, geo=("location",)),
    CollectionSpec("notes", fields=("author", "code"), indexes=(("author",),), unique=(("code",),)),
]

REAL_MONGO = os.environ.get("KUNJUNG_TEST_MONGO_URI")


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
        import pymongo

        client = pymongo.MongoClient(REAL_MONGO)
        db = f"kunjung_test_{uuid.uuid4().hex[:8]}"

        def open_real() -> Store:
            store = open_store(REAL_MONGO, COLLECTIONS, client=client)
            store.db = client[db]
            return store

        return Backend(name, open_real, cleanup=lambda: client.drop_database(db))
    import mongomock_ng

    client = mongomock_ng.MongoClient()
    return Backend(name, lambda: open_store("mongodb://stand-in/kunjung", COLLECTIONS, client=client))


ALL = ["sqlite", "mongo-stand-in[mongomock-ng]"] + (["mongo-real"] if REAL_MONGO else [])
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
