"""MongoDB's own promises: topology, transactions, the driver's error semantics, marks and blocks.

Scenarios that need a server's behaviour run on the stand-in (mongomock-ng answering as a
replica set, tests/mongo_stand_in.py) and, given ``KUNJUNG_TEST_MONGO_URI``, on a real server;
those that inject a server's errors can only run on the stand-in and say so in their ids.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import mongomock_ng
import pymongo
import pytest
from backends import COLLECTIONS, REAL_MONGO, STAND_IN
from mongo_stand_in import (
    MONGOS,
    STANDALONE,
    StandIn,
    commit_time_limit,
    duplicate_key,
    interrupted_by_step_down,
    no_such_transaction,
    not_writable_primary,
    step_down_at_commit,
    unknown_commit_result,
    write_concern_timeout_at_commit,
    write_conflict,
)
from pymongo import errors as mongo_errors

from server.storage import CommitOutcomeUnknown, StoreMisconfigured, StoreUnavailable, WriteConflict, open_store
from server.storage.mongo import _PENDING, MongoStore

FAULTS = "mongo-stand-in[mongomock-ng, injected faults]"
MONGO = [STAND_IN] + (["mongo-real"] if REAL_MONGO else [])


def _open(stand_in: StandIn | None = None, **options) -> MongoStore:
    store = open_store("mongodb://stand-in/kunjung", COLLECTIONS, client=stand_in or StandIn(), **options)
    store.hooks.sleep = lambda seconds: None
    store.ensure_schema()
    return store  # type: ignore[return-value]


@pytest.fixture(params=MONGO)
def mongo(request):
    if request.param == "mongo-real":
        client = pymongo.MongoClient(REAL_MONGO)
        name = f"kunjung_test_{uuid.uuid4().hex[:8]}"
        store = open_store(REAL_MONGO, COLLECTIONS, client=client, database=name)
        store.hooks.sleep = lambda seconds: None
        store.ensure_schema()
        yield store
        client.drop_database(name)
    else:
        yield _open()


@pytest.fixture(params=[FAULTS])
def faulty(request):
    """A store over a stand-in whose errors the test injects (stand-in only)."""
    stand_in = StandIn()
    return stand_in, _open(stand_in)


def _thing(i: int, **extra):
    return {"id": f"t{i:04d}", "village": "32.04.05.2001", "kind": "house", "size": i, **extra}


def _insert(*docs):
    def work(tx):
        for doc in docs:
            tx.insert("things", doc)
    return work


def _assert_once(store, ids):
    """Nothing lost, nothing doubled: each id stored once, with distinct seqs, all visible."""
    changes = store.changes("things", 0, limit=10_000)
    assert sorted(d["id"] for d in changes) == sorted(ids)
    assert len({d["seq"] for d in changes}) == len(changes)
    assert store.db[_PENDING].count_documents({}) == 0


# -- topology ------------------------------------------------------------------------------------------
def test_a_replica_set_member_runs_units_in_snapshot_transactions_with_majority_writes():
    stand_in = StandIn()
    store = _open(stand_in)
    assert store.topology() == "replica set"
    assert store.uses_transactions()
    store.unit_of_work(_insert(_thing(1)))
    options = stand_in.started[-1]
    assert options["read_concern"].level == "snapshot"
    assert options["write_concern"].document == {"w": "majority"}
    assert options["read_preference"].mode == 0  # primary
    assert store.db.write_concern.document == {"w": "majority"}  # the counter, marks and clock too


def test_a_mongos_runs_transactions_too():
    store = _open(StandIn(topology=MONGOS))
    assert store.topology() == "mongos"
    assert store.uses_transactions()


def test_a_standalone_server_is_refused_with_a_message_saying_what_to_do():
    store = open_store("mongodb://stand-in/kunjung", COLLECTIONS, client=StandIn(topology=STANDALONE))
    with pytest.raises(StoreMisconfigured, match="KUNJUNG_MONGO_ALLOW_STANDALONE=true") as info:
        store.ensure_schema()
    assert "--replSet" in str(info.value)
    with pytest.raises(StoreMisconfigured):
        store.insert("things", _thing(1))


def test_a_standalone_server_accepted_by_setting_runs_without_transactions():
    stand_in = StandIn(topology=STANDALONE)
    store = _open(stand_in, allow_standalone=True)
    store.unit_of_work(_insert(_thing(1), _thing(2)))
    assert stand_in.started == []
    _assert_once(store, ["t0001", "t0002"])


def test_a_failed_hello_is_unavailable_and_asked_again_next_time():
    stand_in = StandIn()
    stand_in.inject("hello", lambda: mongo_errors.ServerSelectionTimeoutError("no servers"), times=2)
    store = open_store("mongodb://stand-in/kunjung", COLLECTIONS, client=stand_in)
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            store.ensure_schema()
    store.ensure_schema()
    assert store.uses_transactions()


# -- transactions (stand-in and real server) ------------------------------------------------------------
def test_writes_of_a_unit_are_invisible_to_others_until_it_commits(mongo):
    def work(tx):
        tx.insert("things", _thing(1))
        assert tx.get("things", "t0001") is not None
        assert mongo.get("things", "t0001") is None  # outside the transaction
        assert mongo.count("things") == 0

    mongo.unit_of_work(work)
    assert mongo.get("things", "t0001")["size"] == 1


def test_two_sessions_writing_one_document_the_second_gets_a_write_conflict(mongo):
    mongo.insert("things", _thing(1))
    holding, release = threading.Event(), threading.Event()

    def first(tx):
        doc = tx.get("things", "t0001")
        tx.put("things", {**doc, "size": 10}, expect_seq=doc["seq"])
        holding.set()
        assert release.wait(10)

    runner = threading.Thread(target=mongo.unit_of_work, args=(first,))
    runner.start()
    assert holding.wait(10)
    def second(tx):
        doc = tx.get("things", "t0001")
        tx.put("things", {**doc, "size": 20}, expect_seq=doc["seq"])

    try:
        with pytest.raises(WriteConflict) as info:
            mongo.unit_of_work(second, attempts=1)
    finally:
        release.set()
    cause = info.value.__cause__.__cause__  # "gave up after 1 attempt" <- the conflict <- the server's error
    assert isinstance(cause, mongo_errors.OperationFailure)
    assert cause.code == 112
    assert cause.has_error_label("TransientTransactionError")
    release.set()
    runner.join(10)
    assert mongo.get("things", "t0001")["size"] == 10


def test_a_unit_that_meets_a_concurrent_writer_runs_again_and_applies_once(mongo):
    """Two workers take the same event at once: one inserts it, the other runs again and finds it."""
    paused, release = threading.Event(), threading.Event()
    results: dict[str, bool] = {}

    def slow(tx):
        found = tx.get("things", "t0001")  # the snapshot begins here, before the other insert
        if not paused.is_set():
            paused.set()
            assert release.wait(10)
        results["slow"] = tx.insert("things", _thing(1, by="slow")) if found is None else False

    runner = threading.Thread(target=mongo.unit_of_work, args=(slow,))
    runner.start()
    assert paused.wait(10)
    results["fast"] = mongo.unit_of_work(lambda tx: tx.insert("things", _thing(1, by="fast")))
    release.set()
    runner.join(10)
    assert results == {"fast": True, "slow": False}
    assert mongo.get("things", "t0001")["by"] == "fast"
    _assert_once(mongo, ["t0001"])


def test_two_concurrent_units_advancing_the_clock_do_not_conflict(mongo):
    """advance is a $max outside the transaction: no unit conflicts on it, and it only grows."""
    paused, release = threading.Event(), threading.Event()
    conflicts = []
    mongo.hooks.before_retry = lambda attempt, error: conflicts.append(error)

    def slow(tx):
        tx.advance("notes", "clock", "last", "0000000000005-0000")
        tx.insert("things", _thing(1))
        paused.set()
        assert release.wait(10)
        tx.advance("notes", "clock", "last", "0000000000007-0000")

    runner = threading.Thread(target=mongo.unit_of_work, args=(slow,))
    runner.start()
    assert paused.wait(10)
    mongo.unit_of_work(lambda tx: (tx.advance("notes", "clock", "last", "0000000000009-0000"),
                                   tx.insert("things", _thing(2))))
    release.set()
    runner.join(10)
    assert conflicts == []
    assert mongo.get("notes", "clock")["last"] == "0000000000009-0000"
    _assert_once(mongo, ["t0001", "t0002"])


def test_the_clock_is_stored_before_the_unit_commits(mongo):
    def work(tx):
        tx.advance("notes", "clock", "last", "0000000000005-0000")
        assert mongo.get("notes", "clock")["last"] == "0000000000005-0000"  # already outside the unit
        raise RuntimeError("the worker dies before committing")

    with pytest.raises(RuntimeError):
        mongo.unit_of_work(work)
    assert mongo.get("notes", "clock")["last"] == "0000000000005-0000"  # ahead of the data: harmless


def test_a_large_unit_takes_its_sequence_numbers_in_few_round_trips():
    stand_in = StandIn()
    store = _open(stand_in)
    stand_in.ops.clear()
    store.unit_of_work(_insert(*(_thing(i) for i in range(10))))
    allocations = [op for op in stand_in.ops if op == ("find_one_and_update", "kunjung_meta", False)]
    assert len(allocations) == 4  # blocks of 1, 2, 4 and 8 numbers

    def reserved(tx):
        tx.reserve(10)
        _insert(*(_thing(i) for i in range(10, 20)))(tx)

    stand_in.ops.clear()
    store.unit_of_work(reserved)
    assert [op for op in stand_in.ops if op[0] == "find_one_and_update"] == [
        ("find_one_and_update", "kunjung_meta", False)]
    seqs = [d["seq"] for d in store.changes("things", 0, limit=100)]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 20


def test_a_read_document_written_back_sets_only_the_changed_paths():
    stand_in = StandIn()
    store = _open(stand_in)
    store.insert("things", _thing(1, record={"fields": {"a": 1, "b": 2}}))
    stand_in.ops.clear()

    def edit(tx):
        doc = tx.get("things", "t0001")
        doc["record"]["fields"]["b"] = 3
        tx.put("things", doc, expect_seq=doc["seq"])

    store.unit_of_work(edit)
    writes = [op for op in stand_in.ops if op[1] == "things" and op[0] != "find_one"]
    assert writes == [("update_one", "things", True)]
    assert store.get("things", "t0001")["record"] == {"fields": {"a": 1, "b": 3}}


def test_pending_marks_carry_server_time_under_a_ttl_index(mongo):
    indexes = mongo.db[_PENDING].index_information()
    assert indexes["at_ttl"]["expireAfterSeconds"] == int(mongo.pending_lease)
    seen = []
    mongo.hooks.after_allocate = lambda seq: seen.extend(mongo.db[_PENDING].find({}))
    mongo.insert("things", _thing(1))
    assert len(seen) == 1
    assert isinstance(seen[0]["at"], dt.datetime)
    assert mongo.db[_PENDING].count_documents({}) == 0


def test_marks_of_an_earlier_kunjung_with_worker_time_are_removed_at_start_up():
    stand_in = StandIn()
    store = _open(stand_in)
    store.db[_PENDING].drop_index("at_ttl")
    store.db[_PENDING].create_index([("at", 1)], name="at_1")
    store.db[_PENDING].insert_one({"_id": "old", "floor": 0, "at": 1_700_000_000.0})
    store.ensure_schema()
    assert store.db[_PENDING].count_documents({}) == 0
    indexes = store.db[_PENDING].index_information()
    assert "at_1" not in indexes
    assert indexes["at_ttl"]["expireAfterSeconds"] == int(store.pending_lease)


def test_a_slow_writer_may_hold_the_bound_below_a_readers_cursor_and_nothing_is_skipped(mongo):
    """Why a reader's next cursor is max(since, bound): the bound can be lower than where it is."""
    for i in range(5):
        mongo.insert("things", _thing(i))
    cursor = mongo.visible_seq()
    mongo.db[_PENDING].update_one({"_id": "slow"}, {"$currentDate": {"at": True}, "$setOnInsert": {"floor": 2}},
                                  upsert=True)
    assert mongo.visible_seq() == 2 < cursor
    assert mongo.changes("things", cursor) == []
    mongo.db[_PENDING].delete_one({"_id": "slow"})


# -- the server's errors, injected (stand-in only) ----------------------------------------------------------
@pytest.mark.parametrize("applied", [True, False], ids=["commit applied", "commit not applied"])
@pytest.mark.parametrize("error", [unknown_commit_result, write_concern_timeout_at_commit, step_down_at_commit],
                         ids=["connection dropped", "majority timed out", "primary stepped down"])
def test_an_unknown_commit_result_retries_only_the_commit(faulty, error, applied):
    stand_in, store = faulty
    runs = []

    def work(tx):
        runs.append(1)
        tx.insert("things", _thing(1))

    stand_in.inject("commit", error, applied=applied)
    store.unit_of_work(work)
    assert runs == [1]
    _assert_once(store, ["t0001"])


def test_a_commit_whose_outcome_stays_unknown_keeps_its_mark_until_the_lease_ends(faulty, monkeypatch):
    stand_in, store = faulty
    store.insert("things", _thing(0))
    before = store.visible_seq()
    stand_in.inject("commit", unknown_commit_result, times=store.commit_retry.attempts, applied=True)
    with pytest.raises(CommitOutcomeUnknown):
        store.unit_of_work(_insert(_thing(1)))
    assert store.get("things", "t0001") is not None  # it did commit; the worker could not know
    assert store.visible_seq() == before  # readers wait: the commit might still be showing up
    later = mongomock_ng.utcnow() + dt.timedelta(seconds=store.pending_lease + 1)
    monkeypatch.setattr(mongomock_ng, "utcnow", lambda: later)  # the TTL monitor's clock
    assert store.visible_seq() > before
    assert [d["id"] for d in store.changes("things", before)] == ["t0001"]


def test_a_commit_past_its_time_limit_is_not_retried_and_its_outcome_is_unknown(faulty):
    stand_in, store = faulty
    stand_in.inject("commit", commit_time_limit)
    with pytest.raises(CommitOutcomeUnknown):
        store.unit_of_work(_insert(_thing(1)))
    assert sum(1 for op in stand_in.faults if op.fired) == 1


@pytest.mark.parametrize(("op", "error"), [
    ("insert_one", write_conflict),
    ("insert_one", lambda: duplicate_key("kunjung.things", {"_id": "t0001"})),
    ("insert_one", not_writable_primary),
    ("find_one", interrupted_by_step_down),
    ("commit", no_such_transaction),
], ids=["write conflict 112", "duplicate key in a transaction", "NotWritablePrimary",
        "InterruptedDueToReplStateChange", "NoSuchTransaction at commit"])
def test_a_transient_error_runs_the_unit_again_and_applies_it_once(faulty, op, error):
    stand_in, store = faulty
    retried = []
    store.hooks.before_retry = lambda attempt, exc: retried.append(exc)
    stand_in.inject(op, error, collection=None if op == "commit" else "things", in_transaction=True)
    store.unit_of_work(_insert(_thing(1), _thing(2)))
    assert len(retried) == 1
    assert isinstance(retried[0], WriteConflict)
    _assert_once(store, ["t0001", "t0002"])


def test_a_unit_that_keeps_meeting_conflicts_gives_up_with_write_conflict_and_leaves_nothing(faulty):
    stand_in, store = faulty
    stand_in.inject("insert_one", write_conflict, collection="things", in_transaction=True, times=100)
    with pytest.raises(WriteConflict, match=f"after {store.retry.attempts} attempts"):
        store.unit_of_work(_insert(_thing(1)))
    _assert_once(store, [])


def test_a_primary_stepping_down_outside_a_transaction_is_unavailable_not_retried(faulty):
    stand_in, store = faulty
    stand_in.inject("find_one_and_update", lambda: not_writable_primary(in_transaction=False),
                    collection="kunjung_meta")
    with pytest.raises(StoreUnavailable):
        store.unit_of_work(_insert(_thing(1)))
    store.db[_PENDING].delete_many({})  # the mark of the failed unit: its lease would end it
    _assert_once(store, [])
    store.unit_of_work(_insert(_thing(1)))
    _assert_once(store, ["t0001"])


# -- batches ---------------------------------------------------------------------------------------------
def test_a_batch_is_one_write_and_a_read_batch_written_back_sets_only_the_changed_paths():
    stand_in = StandIn()
    store = _open(stand_in)
    stand_in.ops.clear()
    store.unit_of_work(lambda tx: tx.insert_many("things", [_thing(i, record={"a": i}) for i in range(10)]))
    writes = [op for op in stand_in.ops if op[1] == "things"]
    assert writes == [("find", "things", True), ("insert_many", "things", True)]
    allocations = [op for op in stand_in.ops if op == ("find_one_and_update", "kunjung_meta", False)]
    assert len(allocations) == 1  # the batch reserved its numbers
    updates = []
    real_bulk = type(stand_in["kunjung"]["things"]).bulk_write

    def recording(self, requests, *args, **kwargs):
        updates.extend(type(request).__name__ for request in requests)
        return real_bulk(self, requests, *args, **kwargs)

    type(stand_in["kunjung"]["things"]).bulk_write = recording
    try:
        def edit(tx):
            docs = tx.get_many("things", ["t0001", "t0002"])
            tx.put_many("things", [{**doc, "record": {"a": doc["record"]["a"] + 10}} for doc in docs.values()],
                        expect_seqs=[doc["seq"] for doc in docs.values()])

        stand_in.ops.clear()
        store.unit_of_work(edit)
    finally:
        type(stand_in["kunjung"]["things"]).bulk_write = real_bulk
    assert [op for op in stand_in.ops if op[1] == "things"] == [("find", "things", True),
                                                                 ("bulk_write", "things", True)]
    assert updates == ["UpdateOne", "UpdateOne"]
    assert [store.get("things", f"t000{i}")["record"] for i in (0, 1, 2)] == [{"a": 0}, {"a": 11}, {"a": 12}]
    _assert_once(store, [f"t{i:04d}" for i in range(10)])


@pytest.mark.parametrize(("op", "error"), [
    ("insert_many", write_conflict),
    ("insert_many", not_writable_primary),
    ("bulk_write", write_conflict),
], ids=["write conflict 112 in insert_many", "NotWritablePrimary in insert_many", "write conflict 112 in bulk_write"])
def test_a_transient_error_in_a_batch_runs_the_unit_again_and_applies_it_once(faulty, op, error):
    stand_in, store = faulty
    store.insert("things", _thing(0))
    retried = []
    store.hooks.before_retry = lambda attempt, exc: retried.append(exc)
    stand_in.inject(op, error, collection="things", in_transaction=True)

    def work(tx):
        tx.insert_many("things", [_thing(1), _thing(2)])
        tx.put_many("things", [_thing(0, size=5), _thing(3)])

    store.unit_of_work(work)
    assert len(retried) == 1
    assert isinstance(retried[0], WriteConflict)
    _assert_once(store, ["t0000", "t0001", "t0002", "t0003"])
    assert store.get("things", "t0000")["size"] == 5


def test_another_writer_inserting_an_id_of_a_batch_runs_the_unit_again(faulty, monkeypatch):
    """Another writer inserted one of the ids after the batch looked: the server refuses the
    transaction's write; the unit runs again, finds the document and answers False for it."""
    _, store = faulty
    from server.storage import mongo as mongo_module

    looked = []
    real_taken = mongo_module._MongoWriter._taken

    def blind_once(self, coll, ids):
        if not looked:
            looked.append(ids)
            writer = threading.Thread(target=store.insert, args=("things", _thing(2, size=99)))
            writer.start()  # another worker's insert, committed at once
            writer.join()
            return set()
        return real_taken(self, coll, ids)

    monkeypatch.setattr(mongo_module._MongoWriter, "_taken", blind_once)
    retried = []
    store.hooks.before_retry = lambda attempt, exc: retried.append(exc)
    answers = store.unit_of_work(lambda tx: tx.insert_many("things", [_thing(1), _thing(2), _thing(3)]))
    assert answers == [True, False, True]
    assert len(retried) == 1
    assert isinstance(retried[0], WriteConflict)
    assert store.get("things", "t0002")["size"] == 99
    _assert_once(store, ["t0001", "t0002", "t0003"])


def test_a_duplicate_id_in_a_batch_without_transactions_answers_false_for_it_and_inserts_the_rest(monkeypatch):
    stand_in = StandIn(topology=STANDALONE)
    store = _open(stand_in, allow_standalone=True)
    from server.storage import mongo as mongo_module

    store.insert("things", _thing(2, size=99))
    monkeypatch.setattr(mongo_module._MongoWriter, "_taken", lambda self, coll, ids: set())
    answers = store.unit_of_work(lambda tx: tx.insert_many("things", [_thing(1), _thing(2), _thing(3)]))
    assert answers == [True, False, True]
    assert store.get("things", "t0002")["size"] == 99
    assert {d["id"] for d in store.changes("things", 0)} == {"t0001", "t0002", "t0003"}
