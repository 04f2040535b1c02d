"""The storage contract for units of work, advance and reads by declared queries, on every backend."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from server.storage import SchemaError, WriteConflict
from server.storage.base import CollectionSpec, Query, RetryPolicy


def _thing(i: int, **extra):
    return {"id": f"t{i:04d}", "village": "32.04.05.2001", "kind": "house", "size": i, **extra}


@pytest.fixture
def waits(store):
    """The backoffs a unit of work waited, recorded instead of slept."""
    recorded: list[float] = []
    store.hooks.sleep = recorded.append
    return recorded


def test_a_unit_of_work_commits_and_returns_what_its_function_returns(store):
    def work(tx):
        tx.insert("things", _thing(1))
        return tx.get("things", "t0001")["seq"]

    seq = store.unit_of_work(work)
    assert store.get("things", "t0001")["seq"] == seq


def test_two_officers_editing_one_household_the_loser_reads_again_and_applies_once(store, waits):
    """The first attempt meets a concurrent change (a stale expect_seq); the second reads the new state."""
    store.put("things", _thing(1, visits=0))
    attempts = []

    def add_visit(tx):
        attempts.append(1)
        doc = tx.get("things", "t0001")
        # The first time, as if another worker had written since this unit read the household.
        expect = doc["seq"] - 1 if len(attempts) == 1 else doc["seq"]
        tx.put("things", {**doc, "visits": doc["visits"] + 1}, expect_seq=expect)

    store.unit_of_work(add_visit)
    assert len(attempts) == 2
    assert store.get("things", "t0001")["visits"] == 1
    assert len(waits) == 1
    assert 0 <= waits[0] <= store.retry.delay(1, lambda: 1.0)


def test_a_unit_that_keeps_conflicting_gives_up_with_write_conflict_after_its_attempts(store, waits):
    retried = []
    store.hooks.before_retry = lambda attempt, error: retried.append(attempt)

    def always_stale(tx):
        tx.insert("notes", {"id": "n1", "author": "ani"})
        raise WriteConflict("changed meanwhile")

    with pytest.raises(WriteConflict, match="after 4 attempts"):
        store.unit_of_work(always_stale, attempts=4)
    assert retried == [2, 3, 4]
    assert len(waits) == 3
    caps = [RetryPolicy().delay(n, lambda: 1.0) for n in (1, 2, 3)]
    assert all(0 <= wait <= cap for wait, cap in zip(waits, caps, strict=True))


def test_an_error_that_is_no_conflict_is_not_retried(store, waits):
    calls = []

    def broken(tx):
        calls.append(1)
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        store.unit_of_work(broken)
    assert calls == [1]
    assert waits == []


def test_a_unit_of_work_inside_another_joins_it_and_the_outer_one_retries(store, waits):
    runs = []

    def inner(tx):
        runs.append("inner")
        tx.insert("things", _thing(len(runs)))

    def outer(tx):
        runs.append("outer")
        store.unit_of_work(inner)
        assert store.current_writer() is tx
        if runs.count("outer") == 1:
            raise WriteConflict("changed meanwhile")

    store.unit_of_work(outer)
    assert runs == ["outer", "inner", "outer", "inner"]


def test_a_retried_unit_leaves_nothing_of_its_failed_attempt(transactional_store):
    store = transactional_store
    store.hooks.sleep = lambda seconds: None
    attempts = []

    def work(tx):
        attempts.append(1)
        tx.insert("things", _thing(len(attempts)))
        if len(attempts) == 1:
            raise WriteConflict("changed meanwhile")

    store.unit_of_work(work)
    assert [d["id"] for d in store.changes("things", 0)] == ["t0002"]


def test_failed_unit_of_work_leaves_nothing_on_transactional_backends(transactional_store):
    store = transactional_store

    def interrupted(tx):
        tx.insert("things", _thing(1))
        tx.insert("notes", {"id": "n1", "author": "ani"})
        raise RuntimeError("connection dropped")

    with pytest.raises(RuntimeError):
        store.unit_of_work(interrupted)
    assert store.get("things", "t0001") is None
    assert store.get("notes", "n1") is None
    store.insert("things", _thing(2))
    assert [d["id"] for d in store.changes("things", 0)] == ["t0002"]


# -- advance ------------------------------------------------------------------------------------------
def test_advance_only_raises_a_value(store):
    assert store.advance("notes", "clock", "last", "0000000000005-0000") == "0000000000005-0000"
    assert store.advance("notes", "clock", "last", "0000000000003-0000") == "0000000000005-0000"
    assert store.get("notes", "clock")["last"] == "0000000000005-0000"
    with store.transaction() as tx:
        assert tx.advance("notes", "clock", "last", "0000000000009-0001") == "0000000000009-0001"
    assert store.get("notes", "clock")["last"] == "0000000000009-0001"


def test_advance_keeps_other_fields_and_refuses_tracked_collections(store):
    store.put("notes", {"id": "clock", "author": "server", "last": "0000000000001-0000"})
    store.advance("notes", "clock", "last", "0000000000002-0000")
    assert store.get("notes", "clock") == {"id": "clock", "author": "server", "last": "0000000000002-0000"}
    with pytest.raises(SchemaError):
        store.advance("things", "t0001", "size", 5)


# -- writes of a document read in the unit ----------------------------------------------------------------
def test_writing_back_a_read_document_stores_exactly_the_new_document(store):
    """Whether a backend replaces it or sets the changed paths, the stored document is the new one:
    removed keys (top level and nested) are gone, changed nested values replaced, types kept."""
    store.put("things", _thing(1, record={"fields": {"a": {"value": 1}, "b": {"value": True}}, "old": [1, 2]},
                               note="x", flag=1))

    def edit(tx):
        doc = tx.get("things", "t0001")
        record = doc["record"]
        record["fields"]["a"] = {"value": 2, "stamp": "s"}
        del record["fields"]["b"]
        record["fields"]["c.d"] = {"value": "dotted key"}
        del record["old"]
        doc.pop("note")
        doc["flag"] = True
        return tx.put("things", doc, expect_seq=doc["seq"])

    written = store.unit_of_work(edit)
    stored = store.get("things", "t0001")
    assert stored == written
    assert stored["record"] == {"fields": {"a": {"value": 2, "stamp": "s"}, "c.d": {"value": "dotted key"}}}
    assert "note" not in stored
    assert stored["flag"] is True


def test_writing_back_an_unchanged_untracked_document_keeps_it(store):
    store.put("notes", {"id": "n1", "author": "ani", "body": {"k": [1, {"x": None}]}})

    def touch(tx):
        tx.put("notes", tx.get("notes", "n1"))

    store.unit_of_work(touch)
    assert store.get("notes", "n1") == {"id": "n1", "author": "ani", "body": {"k": [1, {"x": None}]}}


# -- reads are declared queries ------------------------------------------------------------------------------
def test_a_read_no_declared_query_serves_is_refused_in_strict_mode_naming_its_shape(store):
    store.strict_queries = True
    with pytest.raises(SchemaError, match=r"things: filter on kind, size, ordered by village"):
        store.find("things", {"kind": "house", "size": 3}, order_by="village")
    with pytest.raises(SchemaError, match=r"notes: filter on code, counted"):
        store.count("notes", {"code": "A"})
    assert store.find("things", {"kind": "house"}, order_by="-size") == []


def test_outside_strict_mode_an_undeclared_read_is_answered_and_logged_once(store, caplog):
    store.strict_queries = False
    with caplog.at_level(logging.WARNING, logger="kunjung.storage"):
        store.count("notes", {"code": "A"})
        store.count("notes", {"code": "B"})
    assert [r.getMessage() for r in caplog.records] == [
        "notes: filter on code, counted: no declared query serves this read (it may scan or sort)"]


def test_a_declared_query_must_name_an_index_that_serves_it():
    with pytest.raises(SchemaError, match="is not declared"):
        CollectionSpec("x", fields=("a",), queries=(Query(("a",), "id", ("a", "id")),))
    with pytest.raises(SchemaError, match="does not serve"):
        CollectionSpec("x", fields=("a", "b"), indexes=(("a", "b"),), queries=(Query(("a",), "b", ("a", "b")),))
    with pytest.raises(SchemaError, match="does not serve"):
        CollectionSpec("x", fields=("a",), indexes=(("a",),), tracked=True, queries=(Query(("a",), "seq", ("a",)),))
    CollectionSpec("x", fields=("a", "b"), indexes=(("a", "b", "id"),), queries=(Query(("a",), "b", ("a", "b", "id")),))


def test_an_index_an_earlier_version_made_is_dropped_at_start_up(backend_store):
    backend, store = backend_store
    retiring = CollectionSpec("notes", fields=("author", "code"), indexes=(("author",),), unique=(("code",),),
                              retired=(("author", "code"),))
    if backend.name == "sqlite":
        conn = sqlite3.connect(store.path)
        conn.execute('CREATE INDEX "ix_notes__author_code" ON "c_notes"("f_author", "f_code")')
        conn.commit()
        conn.close()
    else:
        store.db["notes"].create_index([("author", 1), ("code", 1)], name="author_code")
    store.collections["notes"] = retiring
    store.ensure_schema()
    if backend.name == "sqlite":
        conn = sqlite3.connect(store.path)
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        conn.close()
        assert "ix_notes__author_code" not in names
        assert "ix_notes__author" in names
    else:
        names = set(store.db["notes"].index_information())
        assert "author_code" not in names
        assert "author" in names


def test_threads_of_one_worker_queue_for_the_write_lock_and_one_held_too_long_gives_a_clear_busy(tmp_path):
    """Eight request threads writing at once all commit, in turn; a write that waits past the store's timeout
    behind a stuck one of its own process is refused as busy (503 at the edge) instead of hanging."""
    import threading

    from server.storage import StoreUnavailable, open_store

    spec = CollectionSpec("tally", tracked=False)
    store = open_store(f"sqlite:///{tmp_path}/kunjung.db", [spec])
    store.ensure_schema()
    with store.transaction() as tx:
        tx.put("tally", {"id": "n", "count": 0})

    def add_many():
        for _ in range(25):
            with store.transaction() as tx:
                doc = tx.get("tally", "n")
                tx.put("tally", {**doc, "count": doc["count"] + 1})

    threads = [threading.Thread(target=add_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("tally", "n")["count"] == 200  # no lost update, no busy error

    store.timeout = 0.2
    holding, release = threading.Event(), threading.Event()

    def stuck():
        with store.transaction():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=stuck)
    holder.start()
    holding.wait(10)
    try:
        with pytest.raises(StoreUnavailable, match="busy"), store.transaction() as tx:
            tx.put("tally", {"id": "late", "count": 1})
    finally:
        release.set()
        holder.join()
    assert store.get("tally", "late") is None
    store.close()
