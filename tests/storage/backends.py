"""The collections and backend names of the storage suites (shared by conftest and test modules)."""

from __future__ import annotations

import os

from server.storage import CollectionSpec, Query

COLLECTIONS = [
    CollectionSpec("things", fields=("village", "kind", "size"),
                   indexes=(("village", "id"), ("kind", "id"), ("kind", "size", "id"), ("size", "id"),
                            ("village", "seq")),
                   tracked=True, geo=("location",),
                   queries=(Query(), Query(order=None), Query(("village",), "id", ("village", "id")),
                            Query(("village",), None, ("village", "id")), Query(("kind",), "id", ("kind", "id")),
                            Query(("kind",), "size", ("kind", "size", "id")), Query(("size",), "id", ("size", "id")),
                            Query(("seq",), "seq", ("seq",)), Query(("village", "seq"), "seq", ("village", "seq")))),
    CollectionSpec("notes", fields=("author", "code"), indexes=(("author",),), unique=(("code",),),
                   queries=(Query(), Query(("author",), None, ("author",)))),
]
STAND_IN = "mongo-stand-in[mongomock-ng]"
REAL_MONGO = os.environ.get("KUNJUNG_TEST_MONGO_URI")
