"""The storage contract: every promise of server.storage.base.Store, run against every backend."""

from __future__ import annotations

import threading

import pytest

from server.storage import (
    AnyOf,
    In,
    Range,
    SchemaError,
    UniqueViolation,
    WriteConflict,
    prefix_range,
)
from server.storage import migrations as migrations_module
from server.storage.migrations import Migration


def _thing(i: int, village: str = "32.04.05.2001", **extra):
    return {"id": f"t{i:04d}", "village": village, "kind": "house", "size": i, **extra}


# -- idempotent insert ----------------------------------------------------------------------
def test_second_insert_of_same_id_is_reported_and_not_duplicated(store):
    assert store.insert("things", _thing(1, note="first")) is True
    assert store.insert("things", _thing(1, note="second")) is False
    assert store.count("things") == 1
    assert store.get("things", "t0001")["note"] == "first"


def test_insert_into_tracked_collection_assigns_increasing_seq(store):
    for i in range(5):
        store.insert("things", _thing(i))
    seqs = [store.get("things", f"t{i:04d}")["seq"] for i in range(5)]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 5
    assert store.visible_seq() >= seqs[-1]


def test_untracked_collection_has_no_seq(store):
    store.insert("notes", {"id": "n1", "author": "ani", "code": "A"})
    assert "seq" not in store.get("notes", "n1")


def test_get_unknown_id_is_none(store):
    assert store.get("things", "nope") is None


# -- put, conditional writes, delete -----------------------------------------------------------
def test_put_replaces_and_moves_document_to_end_of_sequence(store):
    store.insert("things", _thing(1))
    store.insert("things", _thing(2))
    updated = store.put("things", _thing(1, size=99))
    assert updated["seq"] > store.get("things", "t0002")["seq"]
    assert store.get("things", "t0001")["size"] == 99
    assert [d["id"] for d in store.changes("things", 0)] == ["t0002", "t0001"]


def test_put_with_expected_seq_refuses_a_concurrent_change(store):
    first = store.put("things", _thing(1), expect_seq=None)
    with pytest.raises(WriteConflict):
        store.put("things", _thing(1), expect_seq=None)
    second = store.put("things", _thing(1, size=5), expect_seq=first["seq"])
    with pytest.raises(WriteConflict):
        store.put("things", _thing(1, size=6), expect_seq=first["seq"])
    assert store.get("things", "t0001")["seq"] == second["seq"]


def test_delete_untracked_and_refuse_delete_tracked(store):
    store.insert("notes", {"id": "n1", "author": "ani", "code": "A"})
    assert store.delete("notes", "n1") is True
    assert store.delete("notes", "n1") is False
    store.insert("things", _thing(1))
    with pytest.raises(SchemaError):
        store.delete("things", "t0001")


def test_remove_takes_the_matching_documents_of_a_tracked_collection_and_leaves_the_rest(store):
    for i in range(6):
        store.insert("things", _thing(i, village="32.04.05.2001" if i % 2 else "32.04.05.2002"))
    kept_seqs = {d["id"]: d["seq"] for d in store.find("things", {"village": "32.04.05.2002"})}
    assert store.remove("things", {"village": "32.04.05.2001"}) == 3
    assert store.remove("things", {"village": "32.04.05.2001"}) == 0
    assert sorted(d["id"] for d in store.changes("things", 0)) == ["t0000", "t0002", "t0004"]
    # what stays keeps its place in the sequence; the removed numbers stay dead
    assert {d["id"]: d["seq"] for d in store.find("things", {"village": "32.04.05.2002"})} == kept_seqs
    after = store.put("things", _thing(9))
    assert after["seq"] > max(kept_seqs.values())
    store.insert("notes", {"id": "n1", "author": "ani", "code": "A"})
    store.insert("notes", {"id": "n2", "author": "budi", "code": "B"})
    assert store.remove("notes", {"author": "ani"}) == 1
    assert [d["id"] for d in store.find("notes")] == ["n2"]


def test_remove_with_a_limit_takes_at_most_that_many_so_a_large_removal_runs_in_small_units(store):
    for i in range(7):
        store.insert("things", _thing(i))
    rounds = []
    while (taken := store.remove("things", {"village": In(["32.04.05.2001"])}, limit=3)):
        rounds.append(taken)
    assert rounds == [3, 3, 1]
    assert store.count("things") == 0


def test_remove_in_a_unit_of_work_is_seen_by_it_and_undone_with_it(transactional_store):
    store = transactional_store
    for i in range(3):
        store.insert("things", _thing(i))

    def unit(tx):
        assert tx.get("things", "t0001") is not None
        assert tx.remove("things", {"village": "32.04.05.2001"}) == 3
        assert tx.get("things", "t0001") is None
        tx.put("things", _thing(1, size=50))  # written again after its removal, in the same unit
        raise RuntimeError("the unit fails")

    with pytest.raises(RuntimeError):
        store.unit_of_work(unit)
    assert store.count("things") == 3
    assert store.get("things", "t0001")["size"] == 1
    store.unit_of_work(lambda tx: (tx.get("things", "t0001"), tx.remove("things", {"village": "32.04.05.2001"}),
                                   tx.put("things", _thing(1, size=50))))
    assert [(d["id"], d["size"]) for d in store.find("things")] == [("t0001", 50)]


def test_remove_refuses_an_empty_filter_an_undeclared_shape_and_a_bad_limit(store):
    store.insert("things", _thing(1))
    with pytest.raises(SchemaError):
        store.remove("things", {})
    with pytest.raises(SchemaError):
        store.remove("things", {"kind": "house"})  # kind is indexed, but no count by kind is declared
    with pytest.raises(SchemaError):
        store.remove("things", {"village": "32.04.05.2001"}, limit=0)
    assert store.count("things") == 1


def test_unique_index_violation_is_reported(store):
    store.insert("notes", {"id": "n1", "author": "ani", "code": "A"})
    with pytest.raises(UniqueViolation) as info:
        store.insert("notes", {"id": "n2", "author": "budi", "code": "A"})
    assert info.value.fields == ("code",)
    # documents without the field do not collide
    store.insert("notes", {"id": "n3", "author": "budi"})
    store.insert("notes", {"id": "n4", "author": "budi"})
    assert store.count("notes", {"author": "budi"}) == 2


def test_increment_creates_then_counts(store):
    assert store.increment("notes", "login:ani", "count", defaults={"author": "ani"})["count"] == 1
    after = store.increment("notes", "login:ani", "count", by=2)
    assert after["count"] == 3
    assert after["author"] == "ani"


# -- queries by indexed fields ----------------------------------------------------------------
def test_queries_by_indexed_fields(store):
    villages = ["32.04.05.2001", "32.04.05.2002", "32.04.06.2001"]
    for i in range(9):
        store.insert("things", _thing(i, villages[i % 3], kind="house" if i < 6 else "shop"))
    assert store.count("things", {"village": "32.04.05.2001"}) == 3
    assert {d["id"] for d in store.find("things", {"village": In(villages[:2])})} == {
        f"t{i:04d}" for i in range(9) if i % 3 < 2}
    assert [d["size"] for d in store.find("things", {"size": Range(gte=2, lt=5)})] == [2, 3, 4]
    in_kecamatan = store.find("things", {"village": prefix_range("32.04.05.")})
    assert len(in_kecamatan) == 6
    either = store.find("things", {"village": AnyOf(["32.04.06.2001", prefix_range("32.04.05.2002")])})
    assert len(either) == 6
    assert store.find("things", {"village": In([])}) == []
    shops = store.find("things", {"kind": "shop"}, order_by="-size")
    assert [d["size"] for d in shops] == [8, 7, 6]


def test_value_that_looks_like_an_operator_is_matched_literally(store):
    store.insert("things", _thing(1, village="$ne"))
    store.insert("things", _thing(2))
    assert [d["id"] for d in store.find("things", {"village": "$ne"})] == ["t0001"]
    assert store.find("things", {"village": {"$ne": None}.__repr__()}) == []


def test_query_on_unindexed_field_is_refused(store):
    with pytest.raises(SchemaError):
        store.find("things", {"colour": "red"})
    with pytest.raises(SchemaError):
        store.find("nothing_here")


def test_keyset_paging_by_id_and_by_field_visits_every_document_once(store):
    for i in range(23):
        store.insert("things", _thing(i, kind="house", size=i % 4))
    seen, after = [], None
    while True:
        page = store.find("things", {"kind": "house"}, order_by="size", after=after, limit=5)
        if not page:
            break
        seen.extend(d["id"] for d in page)
        after = (page[-1]["size"], page[-1]["id"])
    assert sorted(seen) == sorted(f"t{i:04d}" for i in range(23))
    assert len(seen) == 23
    streamed = list(store.iterate("things", {"kind": "house"}, batch=4))
    assert [d["id"] for d in streamed] == sorted(seen)


# -- the change sequence -------------------------------------------------------------------------
def test_changes_are_paged_in_seq_order(store):
    for i in range(12):
        store.insert("things", _thing(i, "32.04.05.2001" if i % 2 else "32.04.05.2002"))
    cursor, pages = 0, []
    while True:
        page = store.changes("things", cursor, where={"village": "32.04.05.2001"}, limit=4)
        if not page:
            break
        pages.append([d["id"] for d in page])
        cursor = page[-1]["seq"]
    assert [len(p) for p in pages] == [4, 2]
    flat = [i for p in pages for i in p]
    assert flat == [f"t{i:04d}" for i in range(12) if i % 2]


def test_changes_respect_upper_bound(store):
    for i in range(4):
        store.insert("things", _thing(i))
    bound = store.get("things", "t0001")["seq"]
    assert [d["id"] for d in store.changes("things", 0, upto=bound)] == ["t0000", "t0001"]


def test_changes_on_untracked_collection_refused(store):
    with pytest.raises(SchemaError):
        store.changes("notes", 0)


def test_pull_through_the_gap_between_allocation_and_commit(store):
    """A writer that took a number but has not committed holds readers back: a later
    writer's document is not shown before it, so no cursor can skip the slow one."""
    store.insert("things", _thing(0))
    cursor = store.visible_seq()
    allocated, release = threading.Event(), threading.Event()

    def pause(seq):
        if threading.current_thread().name == "slow-writer":
            allocated.set()
            assert release.wait(10)

    store.hooks.after_allocate = pause
    slow = threading.Thread(target=lambda: store.insert("things", _thing(1)), name="slow-writer")
    slow.start()
    assert allocated.wait(10)
    fast = threading.Thread(target=lambda: store.insert("things", _thing(2)), name="fast-writer")
    fast.start()
    fast.join(0.3)  # on SQLite the fast writer waits for the lock; on MongoDB it commits
    during = store.changes("things", cursor)
    assert [d["id"] for d in during] == []
    release.set()
    slow.join(10)
    fast.join(10)
    store.hooks.after_allocate = None
    after = store.changes("things", cursor)
    assert sorted(d["id"] for d in after) == ["t0001", "t0002"]
    assert [d["seq"] for d in after] == sorted(d["seq"] for d in after)


# -- transactions -----------------------------------------------------------------------------
def test_unit_of_work_sees_its_own_writes(store):
    with store.transaction() as tx:
        assert tx.insert("things", _thing(1)) is True
        assert tx.get("things", "t0001")["size"] == 1
        assert tx.insert("things", _thing(1)) is False
        assert [d["id"] for d in tx.find("things", {"village": "32.04.05.2001"})] == ["t0001"]


def test_failed_unit_of_work_leaves_nothing(atomic_store):
    def interrupted_unit_of_work():
        with atomic_store.transaction() as tx:
            tx.insert("things", _thing(1))
            tx.insert("notes", {"id": "n1", "author": "ani"})
            raise RuntimeError("connection dropped")

    with pytest.raises(RuntimeError):
        interrupted_unit_of_work()
    assert atomic_store.get("things", "t0001") is None
    assert atomic_store.get("notes", "n1") is None
    # the sequence moves on regardless; nothing stays pending
    atomic_store.insert("things", _thing(2))
    assert [d["id"] for d in atomic_store.changes("things", 0)] == ["t0002"]


def test_concurrent_writers_from_several_threads_lose_nothing(atomic_store):
    errors = []

    def write(worker: int) -> None:
        try:
            for i in range(40):
                # One shared counter: on MongoDB concurrent units conflict on it and run again.
                atomic_store.unit_of_work(lambda tx, i=i: (tx.insert("things", _thing(worker * 1000 + i)),
                                                           tx.increment("notes", "counter", "n")))
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert atomic_store.count("things") == 240
    assert atomic_store.get("notes", "counter")["n"] == 240
    seqs = [d["seq"] for d in atomic_store.changes("things", 0, limit=1000)]
    assert len(seqs) == 240 == len(set(seqs))


# -- schema and migrations ---------------------------------------------------------------------
def test_ensure_schema_is_idempotent_and_records_version(store):
    store.insert("things", _thing(1))
    store.ensure_schema()
    store.ensure_schema()
    assert store.schema_version() == migrations_module.MIGRATIONS[-1].version
    assert store.count("things") == 1


def test_start_up_migrates_forward_once(store, monkeypatch):
    ran = []

    def add_size(st, tx):
        ran.append(1)
        for doc in tx.find("things"):
            tx.put("things", {**doc, "size": (doc.get("size") or 0) + 100})

    store.insert("things", _thing(1))
    latest = migrations_module.MIGRATIONS[-1].version
    monkeypatch.setattr(migrations_module, "MIGRATIONS",
                        [*migrations_module.MIGRATIONS, Migration(latest + 1, add_size, "test")])
    store.ensure_schema()
    store.ensure_schema()
    assert ran == [1]
    assert store.schema_version() == latest + 1
    assert store.get("things", "t0001")["size"] == 101
    assert store.find("things", {"size": 101})[0]["id"] == "t0001"


def test_store_from_a_newer_kunjung_is_refused(store, monkeypatch):
    latest = migrations_module.MIGRATIONS[-1].version
    monkeypatch.setattr(migrations_module, "MIGRATIONS",
                        [*migrations_module.MIGRATIONS, Migration(latest + 1, lambda s, t: None, "future")])
    store.ensure_schema()
    monkeypatch.undo()
    with pytest.raises(SchemaError, match="newer"):
        store.ensure_schema()


def test_data_survives_reopening(disk_backend_store):
    backend, store = disk_backend_store
    store.insert("things", _thing(1))
    store.insert("notes", {"id": "n1", "author": "ani"})
    seq = store.visible_seq()
    if backend.name == "sqlite":
        store.close()
    reopened = backend.open()
    reopened.ensure_schema()
    assert reopened.get("things", "t0001")["size"] == 1
    assert reopened.get("notes", "n1")["author"] == "ani"
    reopened.insert("things", _thing(2))
    assert reopened.get("things", "t0002")["seq"] > seq


def test_geojson_points_round_trip_and_mongodb_indexes_them(store, backend_store):
    backend, _ = backend_store
    point = {"type": "Point", "coordinates": [107.6, -7.0]}
    store.insert("things", _thing(1, location=point))
    store.insert("things", _thing(2))
    assert store.get("things", "t0001")["location"] == point
    if backend.name.startswith("mongo"):
        indexes = store.db["things"].index_information()
        assert indexes["location_2dsphere"]["key"] == [("location", "2dsphere")]
        square = {"type": "Polygon", "coordinates": [[[107.5, -7.1], [107.7, -7.1], [107.7, -6.9],
                                                      [107.5, -6.9], [107.5, -7.1]]]}
        inside = list(store.db["things"].find({"location": {"$geoWithin": {"$geometry": square}}}))
        assert [d["_id"] for d in inside] == ["t0001"]


# -- batches: many documents in one call ----------------------------------------------------------
def test_get_many_answers_the_stored_documents_by_id_and_leaves_out_unknown_ids(store):
    for i in range(3):
        store.insert("things", _thing(i))

    def read(tx):
        tx.insert("things", _thing(7))  # a unit's batch read sees its own writes
        return tx.get_many("things", ["t0002", "nope", "t0000", "t0002", "t0007"])

    found = store.unit_of_work(read)
    assert set(found) == {"t0000", "t0002", "t0007"}
    assert found["t0002"] == store.get("things", "t0002")
    assert store.unit_of_work(lambda tx: tx.get_many("things", [])) == {}


def test_get_many_reads_more_ids_than_one_statement_holds(store):
    store.unit_of_work(lambda tx: tx.insert_many("things", [_thing(i) for i in range(1203)]))
    ids = [f"t{i:04d}" for i in range(1300)]
    found = store.unit_of_work(lambda tx: tx.get_many("things", ids))
    assert sorted(found) == [f"t{i:04d}" for i in range(1203)]


def test_insert_many_inserts_in_order_and_answers_each_document_as_insert_would(store):
    store.insert("things", _thing(1, size=100))
    docs = [_thing(0), _thing(1, size=5), _thing(2), _thing(2, size=9), _thing(3)]
    assert store.unit_of_work(lambda tx: tx.insert_many("things", docs)) == [True, False, True, False, True]
    assert store.get("things", "t0001")["size"] == 100  # the stored one is left as it was
    assert store.get("things", "t0002")["size"] == 2  # the first of two with one id
    stored = store.changes("things", 0)
    assert [d["id"] for d in stored] == ["t0001", "t0000", "t0002", "t0003"]  # numbered in the order given
    assert len({d["seq"] for d in stored}) == 4
    assert store.unit_of_work(lambda tx: tx.insert_many("things", [])) == []


def test_insert_many_refused_by_a_unique_index_leaves_nothing_of_the_unit(transactional_store):
    store = transactional_store
    store.insert("notes", {"id": "n1", "author": "ani", "code": "A"})
    with pytest.raises(UniqueViolation) as info:
        store.unit_of_work(lambda tx: tx.insert_many("notes", [{"id": "n2", "author": "budi", "code": "B"},
                                                               {"id": "n3", "author": "budi", "code": "A"}]))
    assert info.value.fields == ("code",)
    assert store.get("notes", "n2") is None
    assert store.get("notes", "n3") is None


def test_put_many_replaces_each_document_and_moves_it_to_the_end_of_the_sequence(store):
    for i in range(3):
        store.insert("things", _thing(i))
    before = {d["id"]: d["seq"] for d in store.changes("things", 0)}

    def edit(tx):
        docs = tx.get_many("things", ["t0000", "t0002"])
        return tx.put_many("things", [{**docs["t0002"], "size": 20}, {**docs["t0000"], "size": 10}, _thing(5)])

    written = store.unit_of_work(edit)
    assert [d["id"] for d in written] == ["t0002", "t0000", "t0005"]
    assert [d["id"] for d in store.changes("things", max(before.values()))] == ["t0002", "t0000", "t0005"]
    assert [store.get("things", f"t000{i}")["size"] for i in (0, 1, 2, 5)] == [10, 1, 20, 5]
    assert [d["seq"] for d in written] == [store.get("things", d["id"])["seq"] for d in written]


def test_put_many_with_expected_seqs_writes_when_they_hold(store):
    first = store.put("things", _thing(1))

    def edit(tx):
        return tx.put_many("things", [_thing(1, size=11), _thing(2, size=22)], expect_seqs=[first["seq"], None])

    store.unit_of_work(edit)
    assert store.get("things", "t0001")["size"] == 11
    assert store.get("things", "t0002")["size"] == 22


def test_put_many_refuses_the_batch_when_one_expected_seq_no_longer_holds(transactional_store):
    store = transactional_store
    first = store.put("things", _thing(1))
    store.put("things", _thing(1, size=3))  # changed since "first" was read
    with pytest.raises(WriteConflict), store.transaction() as tx:
        tx.put_many("things", [_thing(2, size=22), _thing(1, size=11)], expect_seqs=[None, first["seq"]])
    assert store.get("things", "t0001")["size"] == 3
    assert store.get("things", "t0002") is None
    with pytest.raises(WriteConflict), store.transaction() as tx:  # "only if absent" for a stored one
        tx.put_many("things", [_thing(1, size=4), _thing(3)], expect_seqs=[None, None])
    assert store.get("things", "t0001")["size"] == 3
    assert store.get("things", "t0003") is None


def test_put_many_of_one_id_twice_is_two_puts_in_turn(store):
    def twice(tx):
        return tx.put_many("things", [_thing(1, size=1), _thing(1, size=2)])

    first, second = store.unit_of_work(twice)
    assert second["seq"] > first["seq"]
    assert store.get("things", "t0001") == second
