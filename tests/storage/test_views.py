"""Encoded views kept beside documents (CollectionSpec.views, Store.encoded_changes), on every backend."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from backends import CARDS, COLLECTIONS, card_views

from server.storage import SchemaError, StorageError, open_store


def _card(n: int, name: str, village: str = "32.04.05.2001", **extra) -> dict:
    return {"id": f"c{n:03d}", "village": village, "name": name, **extra}


def _expected(store, view: str, since: int = 0, **where) -> list[tuple[int, str, bytes]]:
    """What the encoder makes of each stored card now, in seq order: what the views must be."""
    index = CARDS.views.index(view)
    return [(doc["seq"], doc["id"], card_views(doc)[index])
            for doc in store.changes("cards", since, where=where or None, limit=1000)]


def test_every_kind_of_write_stores_the_views_the_encoder_makes_of_the_document_as_stored(store):
    store.insert("cards", _card(1, "siti"))
    store.put("cards", _card(2, "budi"))
    store.unit_of_work(lambda tx: tx.insert_many("cards", [_card(3, "ani"), _card(4, "rina", "32.04.05.2002")]))
    first = store.get("cards", "c001")
    store.unit_of_work(lambda tx: tx.put_many("cards", [_card(1, "siti aminah"), _card(5, "dewi")],
                                              expect_seqs=[first["seq"], None]))

    def rewrite(tx):
        tx.get("cards", "c002")  # a document read in the unit is written by its changed paths on MongoDB
        tx.put("cards", _card(2, "budi santoso"))
    store.unit_of_work(rewrite)
    for view in CARDS.views:
        got = store.encoded_changes("cards", view, 0)
        assert got == _expected(store, view)
        assert len(got) == 5
    assert [orjson.loads(b)["name"] for _, _, b in store.encoded_changes("cards", "shouted", 0)] == [
        "ANI", "RINA", "SITI AMINAH", "DEWI", "BUDI SANTOSO"]
    # The plain view carries the seq: it was encoded from the document as stored.
    assert {orjson.loads(b)["seq"] for _, _, b in store.encoded_changes("cards", "plain", 0)} == {
        doc["seq"] for doc in store.find("cards")}


def test_encoded_changes_page_like_changes_by_cursor_filter_limit_and_bound(store):
    for n in range(6):
        store.insert("cards", _card(n, f"name {n}", "32.04.05.2001" if n % 2 else "32.04.05.2002"))
    seqs = [doc["seq"] for doc in store.changes("cards", 0)]
    assert store.encoded_changes("cards", "plain", seqs[1]) == _expected(store, "plain", seqs[1])
    narrowed = store.encoded_changes("cards", "plain", 0, where={"village": "32.04.05.2001"}, limit=2,
                                     upto=seqs[4])
    assert [id for _, id, _ in narrowed] == ["c001", "c003"]
    assert [id for _, id, _ in store.encoded_changes("cards", "plain", 0, upto=seqs[2])] == ["c000", "c001", "c002"]
    assert store.encoded_changes("cards", "plain", seqs[-1]) == []


def test_reading_documents_never_shows_their_views(store):
    store.insert("cards", _card(1, "siti"))
    store.unit_of_work(lambda tx: tx.insert_many("cards", [_card(2, "budi")]))
    keys = {"id", "seq", "village", "name"}
    assert set(store.get("cards", "c001")) == keys
    assert all(set(doc) == keys for doc in store.find("cards"))
    assert all(set(doc) == keys for doc in store.changes("cards", 0))
    assert all(set(doc) == keys for doc in store.iterate("cards"))
    got = store.unit_of_work(lambda tx: (tx.get("cards", "c001"), tx.get_many("cards", ["c002"])))
    assert set(got[0]) == keys
    assert set(got[1]["c002"]) == keys


def test_a_document_the_encoder_makes_no_view_of_is_stored_and_its_view_refused_by_name(store):
    store.insert("cards", _card(1, "siti", blank=True))
    assert store.get("cards", "c001")["blank"] is True
    with pytest.raises(StorageError, match="c001"):
        store.encoded_changes("cards", "plain", 0)
    with pytest.raises(SchemaError):
        store.encoded_changes("cards", "nope", 0)
    with pytest.raises(SchemaError):
        store.encoded_changes("things", "plain", 0)


def _forget_views(backend, store) -> None:
    """Make the store look as one written by a kunjung that kept no views."""
    if backend.name == "sqlite":
        with store.transaction() as tx:
            tx.conn.execute('UPDATE "c_cards" SET "v_plain" = NULL, "v_shouted" = NULL')
            tx.conn.execute("DELETE FROM meta WHERE key = 'views:cards'")
    else:
        for doc in store.find("cards"):
            store.db["cards"].update_one({"_id": doc["id"]}, {"$unset": {"_views": ""}})
        store.db["kunjung_meta"].delete_one({"_id": "views:cards"})


def test_a_document_stored_without_its_views_is_encoded_when_read(backend_store):
    backend, store = backend_store
    for n in range(3):
        store.insert("cards", _card(n, f"name {n}"))
    _forget_views(backend, store)
    assert store.encoded_changes("cards", "shouted", 0) == _expected(store, "shouted")


def test_start_up_stores_the_views_of_a_store_that_had_none_or_had_another_version(backend_store):
    backend, store = backend_store
    for n in range(3):
        store.insert("cards", _card(n, f"name {n}"))
    before = [(doc["id"], doc["seq"]) for doc in store.changes("cards", 0)]
    _forget_views(backend, store)
    reopened = backend.open()
    reopened.ensure_schema()
    if backend.name == "sqlite":
        with reopened.transaction() as tx:
            assert tx.conn.execute('SELECT COUNT(*) FROM "c_cards" WHERE "v_plain" IS NULL').fetchone()[0] == 0
    else:
        assert all("_views" in doc for doc in reopened.db["cards"].find({}))
    assert reopened.encoded_changes("cards", "plain", 0) == _expected(reopened, "plain")

    # A new encoder under a new version: every stored view is made again, no document moves in the sequence.
    def lower(doc):
        return orjson.dumps(doc["name"].lower()), orjson.dumps(doc["name"].title())
    specs = [dataclasses.replace(CARDS, encode_views=lower, views_version=2) if spec is CARDS else spec
             for spec in COLLECTIONS]
    url = reopened.url
    if backend.name == "sqlite":
        newer = open_store(url, specs)
    else:
        newer = open_store(url, specs, client=reopened.client, database=reopened.db.name)
    newer.ensure_schema()
    assert [(id, seq) for seq, id, _ in newer.encoded_changes("cards", "shouted", 0)] == [
        (id, seq) for id, seq in before]
    assert [orjson.loads(b) for _, _, b in newer.encoded_changes("cards", "shouted", 0)] == [
        "Name 0", "Name 1", "Name 2"]
    # The same version again: start-up leaves the stored views alone.
    again = open_store(url, specs) if backend.name == "sqlite" else open_store(
        url, specs, client=reopened.client, database=reopened.db.name)
    again.ensure_schema()
    assert [orjson.loads(b) for _, _, b in again.encoded_changes("cards", "plain", 0)] == ["name 0", "name 1", "name 2"]


def test_views_must_come_with_their_encoder_and_a_tracked_collection():
    with pytest.raises(SchemaError):
        dataclasses.replace(CARDS, encode_views=None)
    with pytest.raises(SchemaError):
        dataclasses.replace(CARDS, tracked=False)
    with pytest.raises(SchemaError):
        dataclasses.replace(CARDS, views=("Bad Name", "x"))
