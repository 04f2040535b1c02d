"""A MongoDB stand-in for tests: mongomock-ng made to answer as a replica set member. Not a MongoDB.

mongomock-ng alone has no ``hello``, shows a transaction's writes to everyone at once, and
restores a whole collection (other sessions' writes too) on abort. This wrapper gives the
behaviour a MongoDB 7 replica set documents, as far as kunjung's store relies on it:

- ``hello`` answers as a replica-set member (``setName``), a mongos (``msg: "isdbgrid"``) or a
  standalone server (neither), or fails as a server that is down;
- multi-document transactions with snapshot isolation: a transaction's writes are invisible to
  others until it commits and are dropped if it aborts; it reads the data as of its first
  operation plus its own writes;
- write conflicts as the server reports them: a transaction writing a document that another
  open transaction has written, or that was changed after its snapshot, gets WriteConflict
  (code 112, label ``TransientTransactionError``) and is aborted on the server, after which
  its commit answers NoSuchTransaction (251); a write outside any transaction waits for the
  transaction holding the document to end (the server makes it wait; here a transaction left
  open longer than ``block_timeout`` is aborted, as the server's transaction lifetime limit does);
- a duplicate key inside a transaction (code 11000) aborts it, as on the server;
- injected faults (:meth:`StandIn.inject`): the errors and labels a real server and pymongo
  raise for an unknown commit result, a primary stepping down, NoSuchTransaction, and so on.

Every operation holds one lock, so the stand-in is safe to drive from several threads; but it
scans whole collections, so nothing may be timed on it (docs/design.md §6).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import mongomock_ng
from mongomock_ng.filtering import filter_applies, resolve_sort_key
from pymongo import InsertOne, ReplaceOne, ReturnDocument, UpdateOne
from pymongo import errors as mongo_errors
from pymongo.errors import InvalidOperation

TRANSIENT = "TransientTransactionError"
UNKNOWN_COMMIT = "UnknownTransactionCommitResult"
RETRYABLE_WRITE = "RetryableWriteError"
REPLICA_SET, MONGOS, STANDALONE = "replica set", "mongos", "standalone"
_ABSENT = object()


# -- the errors a real server (through pymongo) raises -----------------------------------------
def _response(code: int, name: str, message: str, labels: list[str]) -> dict[str, Any]:
    return {"ok": 0.0, "errmsg": message, "code": code, "codeName": name, "errorLabels": labels}


def write_conflict() -> mongo_errors.OperationFailure:
    """What a write inside a transaction gets when another transaction holds the document."""
    message = ("Caused by :: Write conflict during plan execution and yielding is disabled. :: "
               "Please retry your operation or multi-document transaction.")
    return mongo_errors.OperationFailure(message, 112, _response(112, "WriteConflict", message, [TRANSIENT]))


def no_such_transaction() -> mongo_errors.OperationFailure:
    """What the server answers for a transaction it has already aborted."""
    message = "Transaction with { txnNumber: 1 } has been aborted."
    return mongo_errors.OperationFailure(message, 251, _response(251, "NoSuchTransaction", message, [TRANSIENT]))


def duplicate_key(collection: str, key: dict[str, Any]) -> mongo_errors.DuplicateKeyError:
    name = "_id_" if list(key) == ["_id"] else "_".join(key)
    message = f"E11000 duplicate key error collection: {collection} index: {name} dup key: {key}"
    details = {"index": 0, "code": 11000, "errmsg": message, "keyPattern": dict.fromkeys(key, 1), "keyValue": key}
    return mongo_errors.DuplicateKeyError(message, 11000, details)


def not_writable_primary(in_transaction: bool = True) -> mongo_errors.NotPrimaryError:
    """A primary stepped down under an operation (code 10107). Inside a transaction the server
    labels it ``TransientTransactionError`` (and pymongo would add it for any connection
    failure there); outside one it is a retryable write error, raised once pymongo's own single
    retry has failed too."""
    labels = [TRANSIENT] if in_transaction else [RETRYABLE_WRITE]
    return mongo_errors.NotPrimaryError("not primary", _response(10107, "NotWritablePrimary", "not primary", labels))


def interrupted_by_step_down(in_transaction: bool = True) -> mongo_errors.NotPrimaryError:
    """An operation interrupted because the node stepped down (code 11602)."""
    message = "operation was interrupted because a client disconnected"
    labels = [TRANSIENT] if in_transaction else [RETRYABLE_WRITE]
    return mongo_errors.NotPrimaryError(message, _response(11602, "InterruptedDueToReplStateChange", message, labels))


def unknown_commit_result() -> mongo_errors.AutoReconnect:
    """The connection dropped while committing: pymongo removes ``TransientTransactionError`` and
    adds ``UnknownTransactionCommitResult`` (client_session.commit_transaction)."""
    error = mongo_errors.AutoReconnect("connection closed while committing")
    error._add_error_label(UNKNOWN_COMMIT)
    return error


def step_down_at_commit() -> mongo_errors.NotPrimaryError:
    """The primary stepped down during commitTransaction and pymongo's one retry failed too."""
    error = not_writable_primary(in_transaction=False)
    error._remove_error_label(RETRYABLE_WRITE)
    error._add_error_label(UNKNOWN_COMMIT)
    return error


def write_concern_timeout_at_commit() -> mongo_errors.WTimeoutError:
    """The commit was applied on the primary but a majority did not confirm it in time."""
    message = "waiting for replication timed out"
    error = mongo_errors.WTimeoutError(message, 64, {"writeConcernError": {"code": 64, "errmsg": message}})
    error._add_error_label(UNKNOWN_COMMIT)
    return error


def commit_time_limit() -> mongo_errors.ExecutionTimeout:
    """commitTransaction exceeded maxCommitTimeMS (code 50): pymongo labels it unknown, and its
    own ``with_transaction`` does not retry it."""
    error = mongo_errors.ExecutionTimeout("operation exceeded time limit", 50, {"code": 50})
    error._add_error_label(UNKNOWN_COMMIT)
    return error


# -- results (only what the store reads) ---------------------------------------------------------
@dataclass
class _Result:
    matched_count: int = 0
    modified_count: int = 0
    upserted_id: Any = None
    deleted_count: int = 0
    inserted_id: Any = None


@dataclass
class _BulkResult:
    inserted_count: int = 0
    matched_count: int = 0
    modified_count: int = 0
    upserted_count: int = 0

    def add(self, result: _Result) -> None:
        self.inserted_count += result.inserted_id is not None
        self.matched_count += result.matched_count
        self.modified_count += result.modified_count
        self.upserted_count += result.upserted_id is not None


@dataclass
class Fault:
    """An error the stand-in raises instead of (or, for a commit, after) doing an operation."""

    op: str  # "commit", "hello", "ping", or a collection method: "insert_one", "update_one", …
    error: Callable[[], BaseException]
    collection: str | None = None
    in_transaction: bool | None = None
    times: int = 1
    applied: bool = False  # for "commit": the commit happened and only its answer was lost
    fired: int = 0

    def matches(self, op: str, collection: str | None, in_transaction: bool) -> bool:
        return (self.fired < self.times and self.op == op
                and (self.collection is None or self.collection == collection)
                and (self.in_transaction is None or self.in_transaction == in_transaction))


class _Txn:
    """One transaction: its own writes, and the before-images of documents others changed since
    its snapshot (so it keeps reading the snapshot, and a write to them is a conflict)."""

    def __init__(self, client: StandIn, options: dict[str, Any]):
        self.client = client
        self.options = options
        self.began = False
        self.writes: dict[str, dict[Any, Any]] = {}
        self.before: dict[str, dict[Any, Any]] = {}
        self.server_aborted = False
        self.committed = False

    def begin(self) -> None:
        if self.server_aborted:
            raise no_such_transaction()
        if not self.began:
            self.began = True
            self.client.open.append(self)

    def end(self) -> None:
        if self in self.client.open:
            self.client.open.remove(self)
        self.client.changed.notify_all()

    def abort_on_server(self) -> None:
        self.server_aborted = True
        self.writes.clear()
        self.client.aborted_on_server += 1
        self.end()

    def overlay(self, ns: str) -> dict[Any, Any]:
        return {**self.before.get(ns, {}), **self.writes.get(ns, {})}

    def apply(self) -> None:
        for ns, docs in self.writes.items():
            coll = self.client.mock_collection(ns)
            for _id, doc in docs.items():
                self.client.note_change(ns, _id, exclude=self)
                if doc is _ABSENT:
                    coll.delete_one({"_id": _id})
                else:
                    coll.replace_one({"_id": _id}, doc, upsert=True)
        self.committed = True
        self.client.commits += 1
        self.end()


class _Session:
    def __init__(self, client: StandIn):
        self.client = client
        self.txn: _Txn | None = None
        self.state = "none"  # as pymongo: none, starting/in progress, committed, aborted
        self.ended = False

    @property
    def in_transaction(self) -> bool:
        return self.state == "in progress"

    def start_transaction(self, read_concern: Any = None, write_concern: Any = None, read_preference: Any = None,
                          max_commit_time_ms: int | None = None) -> Any:
        if self.ended:
            raise InvalidOperation("Cannot use ended session")
        if self.in_transaction:
            raise InvalidOperation("Transaction already in progress")
        options = {"read_concern": read_concern, "write_concern": write_concern,
                   "read_preference": read_preference, "max_commit_time_ms": max_commit_time_ms}
        with self.client.lock:
            self.client.started.append(options)
            self.txn = _Txn(self.client, options)
            self.state = "in progress"
        return _TransactionContext(self)

    def commit_transaction(self) -> None:
        with self.client.lock:
            if self.txn is None or self.state in ("none", "aborted"):
                raise InvalidOperation("No transaction started")
            txn = self.txn
            self.state = "committed"  # pymongo's state after any commit attempt, so a retry is allowed
            fault = self.client.take("commit", None, True)
            if fault is not None and fault.applied:
                if not txn.committed:
                    txn.apply()
                raise fault.error()
            if txn.committed:
                return  # a retried commit of a committed transaction answers ok, as on the server
            if fault is not None:
                error = fault.error()
                if isinstance(error, mongo_errors.PyMongoError) and error.has_error_label(TRANSIENT):
                    txn.abort_on_server()
                raise error
            if txn.server_aborted:
                raise no_such_transaction()
            txn.apply()

    def abort_transaction(self) -> None:
        with self.client.lock:
            if self.state != "in progress":
                raise InvalidOperation("Cannot call abortTransaction twice" if self.state == "aborted"
                                       else "No transaction started")
            self.state = "aborted"
            if self.txn is not None and not self.txn.committed:
                self.txn.writes.clear()
                self.txn.end()
                self.client.aborts += 1

    def end_session(self) -> None:
        if self.in_transaction:
            self.abort_transaction()
        self.ended = True

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.end_session()


class _TransactionContext:
    def __init__(self, session: _Session):
        self.session = session

    def __enter__(self) -> _Session:
        return self.session

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if self.session.in_transaction:
            if exc_type is None:
                self.session.commit_transaction()
            else:
                self.session.abort_transaction()


def _project(doc: dict[str, Any], projection: Any) -> dict[str, Any]:
    """A projection as MongoDB reads one: fields to include (dotted paths reach into sub-documents,
    ``_id`` comes unless excluded) or, when every field but ``_id`` is 0, fields to leave out."""
    if not projection:
        return doc
    spec = dict(projection)
    with_id = bool(spec.pop("_id", 1))
    if spec and not any(spec.values()):
        out = {k: v for k, v in doc.items() if k not in spec}
        for path in (p for p in spec if "." in p):
            head, rest = path.split(".", 1)
            if isinstance(out.get(head), dict):
                out[head] = _project(out[head], {rest: 0, "_id": 1})
    else:
        out = {}
        for path in (p for p, keep in spec.items() if keep):
            head, _, rest = path.partition(".")
            if head not in doc:
                continue
            if not rest:
                out[head] = doc[head]
            elif isinstance(doc[head], dict):
                inner = _project(doc[head], {rest: 1, "_id": 0})
                out[head] = {**out.get(head, {}), **inner}
        if "_id" in doc:
            out = {"_id": doc["_id"], **out}
    if not with_id:
        out.pop("_id", None)
    return out


def _sort(docs: list[dict[str, Any]], sort: list[tuple[str, int]] | None) -> list[dict[str, Any]]:
    for key, direction in reversed(sort or []):
        docs.sort(key=lambda d, k=key: resolve_sort_key(k, d), reverse=direction < 0)  # type: ignore[misc]
    return docs


class _Cursor:
    def __init__(self, collection: _Collection, filter: Any, projection: Any, session: Any,
                 sort: Any = None, limit: int = 0):
        self.collection, self.filter, self.projection, self.session = collection, filter or {}, projection, session
        self._sort = list(sort) if sort else None
        self._limit = limit

    def sort(self, key_or_list: Any, direction: int | None = None) -> _Cursor:
        self._sort = [(key_or_list, direction or 1)] if isinstance(key_or_list, str) else list(key_or_list)
        return self

    def limit(self, count: int) -> _Cursor:
        self._limit = count
        return self

    def batch_size(self, count: int) -> _Cursor:
        return self

    def __iter__(self) -> Iterator[dict[str, Any]]:
        docs = self.collection._read(self.filter, self.session, "find", self._sort, self._limit)
        return iter([_project(d, self.projection) for d in docs])


class _Collection:
    def __init__(self, database: _Database, name: str):
        self.database = database
        self.name = name
        self.ns = f"{database.name}.{name}"
        self.client = database.client
        self.mock = database.mock[name]

    # -- helpers ----------------------------------------------------------------------------
    def _txn(self, session: Any, op: str) -> _Txn | None:
        """The transaction an operation runs in (raising what the server would for it), or None."""
        in_txn = session is not None and session.in_transaction
        self.client.ops.append((op, self.name, in_txn))
        fault = self.client.take(op, self.name, in_txn)
        if in_txn:
            txn = session.txn
            txn.begin()
            if fault is not None:
                txn.abort_on_server()  # any command error inside a transaction aborts it
                raise fault.error()
            return txn  # type: ignore[no-any-return]
        if fault is not None:
            raise fault.error()
        return None

    def _read(self, filter: Any, session: Any, op: str, sort: Any = None, limit: int = 0) -> list[dict[str, Any]]:
        with self.client.lock:
            txn = self._txn(session, op)
            if txn is None:
                cursor = self.mock.find(filter or {})
                docs = list(cursor.sort(sort) if sort else cursor)
            else:
                overlay = txn.overlay(self.ns)
                docs = [d for d in self.mock.find(filter or {}) if d["_id"] not in overlay]
                docs += [_copy(d) for d in overlay.values() if d is not _ABSENT and filter_applies(filter or {}, d)]
                docs = _sort(docs, sort)
            return docs[:limit] if limit else docs

    def _first(self, filter: Any, txn: _Txn | None) -> dict[str, Any] | None:
        if txn is None:
            return self.mock.find_one(filter)  # type: ignore[no-any-return]
        overlay = txn.overlay(self.ns)
        for doc in self.mock.find(filter):
            if doc["_id"] not in overlay:
                return doc  # type: ignore[no-any-return]
        for doc in overlay.values():
            if doc is not _ABSENT and filter_applies(filter, doc):
                return _copy(doc)  # type: ignore[no-any-return]
        return None

    def _unique_clash(self, doc: dict[str, Any], txn: _Txn | None) -> None:
        for index in self.mock.index_information().values():
            if not index.get("unique"):
                continue
            fields = [k for k, _ in index["key"]]
            if fields == ["_id"] or any(f not in doc for f in fields):
                continue
            probe = {f: doc[f] for f in fields}
            other = self._first(probe, txn)
            if other is not None and other["_id"] != doc["_id"]:
                if txn is not None:
                    txn.abort_on_server()
                raise duplicate_key(self.ns, probe)
            for open_txn in self.client.open:
                if open_txn is not txn:
                    for _id, held in open_txn.writes.get(self.ns, {}).items():
                        same_key = held is not _ABSENT and all(held.get(f) == v for f, v in probe.items())
                        if same_key and _id != doc["_id"]:
                            self._conflict(txn)

    def _conflict(self, txn: _Txn | None) -> None:
        self.client.conflicts += 1
        if txn is not None:
            txn.abort_on_server()
            raise write_conflict()

    def _write(self, txn: _Txn | None, _id: Any, new: Any) -> None:
        """Store ``new`` (or _ABSENT) under ``_id``: in the transaction's writes, or at once."""
        if txn is None:
            self.client.wait_for(self.ns, _id)
            self.client.note_change(self.ns, _id)
            if new is _ABSENT:
                self.mock.delete_one({"_id": _id})
            else:
                if self.mock.find_one({"_id": _id}) is None:
                    self._unique_clash(new, None)
                self.mock.replace_one({"_id": _id}, new, upsert=True)
            return
        held = any(_id in other.writes.get(self.ns, {}) for other in self.client.open if other is not txn)
        if held or _id in txn.before.get(self.ns, {}):
            self._conflict(txn)
        if new is not _ABSENT:
            self._unique_clash(new, txn)
        txn.writes.setdefault(self.ns, {})[_id] = _copy(new) if new is not _ABSENT else _ABSENT

    def _updated(self, current: dict[str, Any] | None, filter: Any, update: Any) -> dict[str, Any]:
        """mongomock-ng's own update semantics, applied to one document in a scratch collection."""
        scratch = self.client.scratch[uuid.uuid4().hex]
        try:
            if current is None:
                scratch.update_one(filter, update, upsert=True)
            else:
                scratch.insert_one(_copy(current))
                scratch.update_one({"_id": current["_id"]}, update)
            return scratch.find_one({})  # type: ignore[no-any-return]
        finally:
            scratch.drop()

    # -- the pymongo surface the store uses ---------------------------------------------------
    def find(self, filter: Any = None, projection: Any = None, *, session: Any = None, sort: Any = None,
             limit: int = 0) -> _Cursor:
        return _Cursor(self, filter, projection, session, sort, limit)

    def find_one(self, filter: Any = None, projection: Any = None, *, session: Any = None,
                 sort: Any = None) -> dict[str, Any] | None:
        docs = self._read(filter, session, "find_one", sort, 1)
        return _project(docs[0], projection) if docs else None

    def count_documents(self, filter: Any, *, session: Any = None) -> int:
        return len(self._read(filter, session, "count_documents"))

    def _insert(self, txn: _Txn | None, doc: dict[str, Any]) -> _Result:
        doc = {"_id": doc.get("_id", uuid.uuid4().hex), **doc}
        if self._first({"_id": doc["_id"]}, txn) is not None:
            if txn is not None:
                txn.abort_on_server()
            raise duplicate_key(self.ns, {"_id": doc["_id"]})
        self._write(txn, doc["_id"], doc)
        return _Result(inserted_id=doc["_id"])

    def _replace(self, txn: _Txn | None, filter: Any, replacement: dict[str, Any], upsert: bool) -> _Result:
        current = self._first(filter, txn)
        if current is None and not upsert:
            return _Result()
        _id = current["_id"] if current is not None else replacement.get("_id", filter.get("_id"))
        self._write(txn, _id, {**replacement, "_id": _id})
        return _Result(matched_count=0 if current is None else 1, modified_count=0 if current is None else 1,
                       upserted_id=None if current is not None else _id)

    def _update(self, txn: _Txn | None, filter: Any, update: Any, upsert: bool) -> _Result:
        current = self._first(filter, txn)
        if current is None and not upsert:
            return _Result()
        new = self._updated(current, filter, update)
        self._write(txn, new["_id"], new)
        return _Result(matched_count=0 if current is None else 1, modified_count=0 if current is None else 1,
                       upserted_id=None if current is not None else new["_id"])

    def insert_one(self, doc: dict[str, Any], *, session: Any = None) -> _Result:
        with self.client.lock:
            return self._insert(self._txn(session, "insert_one"), doc)

    def replace_one(self, filter: Any, replacement: dict[str, Any], upsert: bool = False, *,
                    session: Any = None) -> _Result:
        with self.client.lock:
            return self._replace(self._txn(session, "replace_one"), filter, replacement, upsert)

    def update_one(self, filter: Any, update: Any, upsert: bool = False, *, session: Any = None) -> _Result:
        with self.client.lock:
            return self._update(self._txn(session, "update_one"), filter, update, upsert)

    def _bulk(self, txn: _Txn | None, writes: list[Callable[[], _Result]]) -> _BulkResult:
        """Ordered writes as the server runs a batch: each in turn; the first write error stops it
        (the writes before it stay, outside a transaction) and is reported per operation, in a
        BulkWriteError; a write conflict inside a transaction fails the whole command, with its label."""
        total = _BulkResult()
        for index, write in enumerate(writes):
            try:
                result = write()
            except mongo_errors.DuplicateKeyError as exc:
                raise mongo_errors.BulkWriteError({
                    "writeErrors": [{**(exc.details or {}), "index": index}], "writeConcernErrors": [],
                    "nInserted": total.inserted_count, "nUpserted": total.upserted_count,
                    "nMatched": total.matched_count, "nModified": total.modified_count, "nRemoved": 0,
                    "upserted": []}) from exc
            total.add(result)
        return total

    def insert_many(self, documents: list[dict[str, Any]], ordered: bool = True, *,
                    session: Any = None) -> _BulkResult:
        with self.client.lock:
            txn = self._txn(session, "insert_many")
            return self._bulk(txn, [lambda d=doc: self._insert(txn, d) for doc in documents])

    def bulk_write(self, requests: list[Any], ordered: bool = True, *, session: Any = None) -> _BulkResult:
        with self.client.lock:
            txn = self._txn(session, "bulk_write")
            writes: list[Callable[[], _Result]] = []
            for request in requests:  # pymongo's request objects keep their parts in these attributes
                if isinstance(request, InsertOne):
                    writes.append(lambda r=request: self._insert(txn, r._doc))
                elif isinstance(request, ReplaceOne):
                    writes.append(lambda r=request: self._replace(txn, r._filter, r._doc, bool(r._upsert)))
                elif isinstance(request, UpdateOne):
                    writes.append(lambda r=request: self._update(txn, r._filter, r._doc, bool(r._upsert)))
                else:
                    raise NotImplementedError(f"the stand-in has no bulk {type(request).__name__}")
            return self._bulk(txn, writes)

    def find_one_and_update(self, filter: Any, update: Any, upsert: bool = False,
                            return_document: Any = ReturnDocument.BEFORE, *, session: Any = None) -> Any:
        with self.client.lock:
            txn = self._txn(session, "find_one_and_update")
            current = self._first(filter, txn)
            if current is None and not upsert:
                return None
            new = self._updated(current, filter, update)
            self._write(txn, new["_id"], new)
            return _copy(new) if return_document == ReturnDocument.AFTER else current

    def delete_one(self, filter: Any, *, session: Any = None) -> _Result:
        with self.client.lock:
            txn = self._txn(session, "delete_one")
            current = self._first(filter, txn)
            if current is None:
                return _Result()
            self._write(txn, current["_id"], _ABSENT)
            return _Result(deleted_count=1)

    def delete_many(self, filter: Any, *, session: Any = None) -> _Result:
        with self.client.lock:
            txn = self._txn(session, "delete_many")
            if txn is None:
                return _Result(deleted_count=self.mock.delete_many(filter).deleted_count)
            # In a transaction: each match the transaction sees is removed as delete_one would.
            overlay = txn.overlay(self.ns)
            ids = [d["_id"] for d in self.mock.find(filter or {}) if d["_id"] not in overlay]
            ids += [_id for _id, d in overlay.items() if d is not _ABSENT and filter_applies(filter or {}, d)]
            for _id in ids:
                self._write(txn, _id, _ABSENT)
            return _Result(deleted_count=len(ids))

    def create_index(self, keys: Any, **options: Any) -> str:
        with self.client.lock:
            return self.mock.create_index(keys, **options)  # type: ignore[no-any-return]

    def drop_index(self, name: str) -> None:
        with self.client.lock:
            self.mock.drop_index(name)

    def index_information(self) -> dict[str, Any]:
        with self.client.lock:
            return self.mock.index_information()  # type: ignore[no-any-return]


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class _Database:
    def __init__(self, client: StandIn, name: str, write_concern: Any = None):
        self.client = client
        self.name = name
        self.write_concern = write_concern
        self.mock = client.mock[name]

    def __getitem__(self, name: str) -> _Collection:
        return _Collection(self, name)

    def get_collection(self, name: str, **options: Any) -> _Collection:
        return _Collection(self, name)

    def command(self, command: Any, **kwargs: Any) -> dict[str, Any]:
        return self.client.command(command)


class _Admin:
    def __init__(self, client: StandIn):
        self.client = client

    def command(self, command: Any, **kwargs: Any) -> dict[str, Any]:
        return self.client.command(command)


@dataclass
class StandIn:
    """A mongomock-ng client that answers as a MongoDB replica set (or ``topology``) would."""

    topology: str = REPLICA_SET
    block_timeout: float = 2.0
    mock: Any = field(default_factory=mongomock_ng.MongoClient)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.scratch = mongomock_ng.MongoClient()["scratch"]
        self.open: list[_Txn] = []
        self.faults: list[Fault] = []
        self.started: list[dict[str, Any]] = []
        self.ops: list[tuple[str, str, bool]] = []  # (operation, collection, in a transaction)
        self.databases: dict[str, _Database] = {}
        self.commits = self.aborts = self.aborted_on_server = self.conflicts = 0
        self.admin = _Admin(self)

    # -- faults -------------------------------------------------------------------------------
    def inject(self, op: str, error: Callable[[], BaseException], *, collection: str | None = None,
               in_transaction: bool | None = None, times: int = 1, applied: bool = False) -> Fault:
        """Raise ``error()`` at the next ``times`` operations ``op`` (on ``collection``, in or out of
        a transaction). For ``op="commit"`` with ``applied=True`` the commit happens first and only
        its answer is lost, as when a connection drops after the server committed."""
        fault = Fault(op, error, collection, in_transaction, times, applied)
        with self.lock:
            self.faults.append(fault)
        return fault

    def take(self, op: str, collection: str | None, in_transaction: bool) -> Fault | None:
        for fault in self.faults:
            if fault.matches(op, collection, in_transaction):
                fault.fired += 1
                return fault
        return None

    # -- what the transactions need ---------------------------------------------------------------
    def mock_collection(self, ns: str) -> Any:
        db, name = ns.split(".", 1)
        return self.mock[db][name]

    def note_change(self, ns: str, _id: Any, exclude: _Txn | None = None) -> None:
        """Before a committed change: every open transaction keeps the version its snapshot had."""
        current = None
        for txn in self.open:
            if txn is exclude or _id in txn.before.get(ns, {}):
                continue
            if current is None:
                found = self.mock_collection(ns).find_one({"_id": _id})
                current = _ABSENT if found is None else found
            txn.before.setdefault(ns, {})[_id] = current

    def wait_for(self, ns: str, _id: Any) -> None:
        """A write outside a transaction waits while an open transaction holds the document."""
        def holders() -> list[_Txn]:
            return [t for t in self.open if _id in t.writes.get(ns, {})]

        if holders() and not self.changed.wait_for(lambda: not holders(), timeout=self.block_timeout):
            for txn in holders():
                txn.abort_on_server()  # as the server's transaction lifetime limit would

    def command(self, command: Any) -> dict[str, Any]:
        name = command if isinstance(command, str) else next(iter(command))
        with self.lock:
            fault = self.take(name, None, False)
        if fault is not None:
            raise fault.error()
        if name == "ping":
            return {"ok": 1.0}
        if name == "hello":
            hello: dict[str, Any] = {"isWritablePrimary": True, "maxWireVersion": 21, "ok": 1.0}
            if self.topology == REPLICA_SET:
                hello.update(setName="rs0", hosts=["stand-in:27017"], primary="stand-in:27017")
            elif self.topology == MONGOS:
                hello["msg"] = "isdbgrid"
            return hello
        raise NotImplementedError(f"the stand-in does not answer {name!r}")

    # -- the pymongo client surface -------------------------------------------------------------
    def get_database(self, name: str | None = None, write_concern: Any = None, **options: Any) -> _Database:
        name = name or "kunjung"
        with self.lock:
            if name not in self.databases or write_concern is not None:
                self.databases[name] = _Database(self, name, write_concern)
            return self.databases[name]

    def get_default_database(self, default: str | None = None, **options: Any) -> _Database:
        return self.get_database(default, **options)

    def __getitem__(self, name: str) -> _Database:
        return self.get_database(name)

    def start_session(self, **options: Any) -> _Session:
        with self.lock:
            fault = self.take("start_session", None, False)
        if fault is not None:
            raise fault.error()
        return _Session(self)

    def close(self) -> None:
        """Nothing to release; the data stays, as a server's would."""


def stand_in_store(stand_in: StandIn | None = None, **options: Any) -> Any:
    """A MongoDB store of the server's collections over a stand-in (not a MongoDB)."""
    from server.storage import open_store
    from server.store import COLLECTIONS

    return open_store(STAND_IN_URL, COLLECTIONS, client=stand_in or StandIn(), **options)


STAND_IN_URL = "mongodb://stand-in/kunjung"
