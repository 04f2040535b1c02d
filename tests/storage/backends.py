"""The collections and backend names of the storage suites (shared by conftest and test modules)."""

from __future__ import annotations

import os

import orjson

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


def card_views(doc: dict) -> tuple[bytes, bytes] | None:
    """The encoded views of a card (tests/storage/test_views.py): none for a card marked so."""
    if doc.get("blank"):
        return None
    return (orjson.dumps({"id": doc["id"], "seq": doc["seq"], "name": doc["name"]}),
            orjson.dumps({"id": doc["id"], "name": doc["name"].upper()}))


CARDS = CollectionSpec("cards", fields=("village",), indexes=(("village", "seq"),), tracked=True,
                       queries=(Query(), Query(("seq",), "seq", ("seq",)),
                                Query(("village", "seq"), "seq", ("village", "seq"))),
                       views=("plain", "shouted"), encode_views=card_views)
COLLECTIONS.append(CARDS)
STAND_IN = "mongo-stand-in[mongomock-ng]"
REAL_MONGO = os.environ.get("KUNJUNG_TEST_MONGO_URI")
