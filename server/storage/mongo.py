"""The production backend: MongoDB through pymongo, one MongoDB collection per collection.

**Transactions.** A unit of work is one multi-document transaction (read concern
``snapshot``, write concern ``majority``, primary), which needs a replica set or a mongos:
the topology is asked with ``hello`` (``setName``: a replica-set member; ``msg ==
"isdbgrid"``: a mongos; neither: a standalone mongod) and a standalone is refused unless
``allow_standalone`` accepts a store without transactions. A failed ``hello`` is
:class:`StoreUnavailable` and is asked again next time; only an answer is remembered.

Errors follow the driver's transaction semantics (pymongo's ``with_transaction``): an error
labelled ``TransientTransactionError`` (WriteConflict 112, NoSuchTransaction 251, a primary
stepping down, a network error inside the transaction) aborts the attempt and is raised as
:class:`WriteConflict`, for :meth:`Store.unit_of_work` to run the unit again; a commit
labelled ``UnknownTransactionCommitResult`` is retried on its own (a commit is idempotent on
the server), and if its outcome stays unknown, :class:`CommitOutcomeUnknown` is raised with
the unit's pending mark kept. A duplicate key inside a transaction aborts it; on ``_id`` it
means a concurrent writer inserted the document first, and the unit is run again.

**The change sequence** stays commit-ordered with operations that mongomock-ng also
supports, so the same code is exercised on the development machines (docs/design.md §4):

1. a writer first upserts a *pending mark* carrying the counter value it read (its floor)
   and the server's time (``$currentDate``);
2. it allocates numbers in blocks with ``find_one_and_update($inc: n)``, each above that
   floor (numbers of a block left unused are dead: nothing will ever carry them);
3. it writes its documents and commits, then deletes the mark.

A reader reads the counter *first* and the marks *second*, and reads no further than the
lowest floor of a mark. Any number at or below the counter it read was allocated after its
writer's mark was written, so the reader sees that mark unless the write has already
committed. The marks' TTL index (server time) removes the mark of a writer that died after
``pending_lease`` seconds (plus up to a minute, the TTL monitor's period); a live unit cannot
hold one that long, because the server ends transactions after 60 s. The counter, the marks
and :meth:`advance` are written outside the transaction with write concern ``majority``, so
they are visible at once and survive a fail-over.

**Writes** of a document read in the same unit of work ``$set``/``$unset`` only the paths
that changed (in a transaction the snapshot guarantees the stored document is the one read;
without one, only under an ``expect_seq`` condition).

**Encoded views** (``CollectionSpec.views``) are kept in each document under ``_views`` as
deflated binary values, written with the document and left out of every read of the document
itself.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import ASCENDING, InsertOne, ReplaceOne, ReturnDocument, UpdateOne
from pymongo import errors as mongo_errors
from pymongo.read_concern import ReadConcern
from pymongo.read_preferences import ReadPreference
from pymongo.write_concern import WriteConcern

from .base import (
    UNIQUE_ORDERS,
    AnyOf,
    CollectionSpec,
    CommitOutcomeUnknown,
    Document,
    In,
    Range,
    RetryPolicy,
    SchemaError,
    Store,
    StoreMisconfigured,
    StoreUnavailable,
    UniqueViolation,
    Where,
    WriteConflict,
    Writer,
    log,
    pack_view,
    unpack_view,
)
from .migrations import pending_migrations

_UNSET = ...
_META = "kunjung_meta"
_PENDING = "kunjung_pending"

TRANSIENT = "TransientTransactionError"
UNKNOWN_COMMIT = "UnknownTransactionCommitResult"
WRITE_CONFLICT = 112
NO_SUCH_TRANSACTION = 251
MAX_TIME_MS_EXPIRED = 50
DUPLICATE_KEY = 11000
# Ids per "$in" read of a batch: a few hundred keep each command small.
_CHUNK = 500
# "Not primary" and "node is recovering" codes (the SDAM specification): a fail-over under way.
UNAVAILABLE_CODES = frozenset({91, 189, 10107, 11600, 11602, 13435, 13436})

REPLICA_SET = "replica set"
SHARDED = "mongos"
STANDALONE = "standalone"

MAJORITY = WriteConcern("majority")
ALLOW_STANDALONE_SETTING = "KUNJUNG_MONGO_ALLOW_STANDALONE"
VIEWS = "_views"
# Reads of documents leave their encoded views on the server.
_NO_VIEWS = {VIEWS: 0}


def _condition(cond: Any) -> Any:
    if isinstance(cond, In):
        return {"$in": list(cond.values)}
    if isinstance(cond, Range):
        out = {}
        for op, value in (("$gte", cond.gte), ("$gt", cond.gt), ("$lt", cond.lt), ("$lte", cond.lte)):
            if value is not None:
                out[op] = value
        return out
    # A plain value is matched with $eq so that a dict in user data is never an operator.
    return {"$eq": cond}


def _key(field: str) -> str:
    return "_id" if field == "id" else field


def _query(where: Where | None) -> dict[str, Any]:
    """The filter document. One ``AnyOf`` (a scope: exact villages or kecamatan prefixes) becomes
    a rooted ``$or`` whose branches each carry the other conditions, so that every branch is
    planned on the index on its own (a ``$or`` nested in an ``$and`` is planned worse)."""
    plain: dict[str, Any] = {}
    choices: list[tuple[str, AnyOf]] = []
    for field, cond in (where or {}).items():
        if isinstance(cond, AnyOf):
            if cond.options:
                choices.append((_key(field), cond))
            else:
                plain[_key(field)] = {"$in": []}
        else:
            plain[_key(field)] = _condition(cond)
    if not choices:
        return plain
    if len(choices) == 1:
        key, cond = choices[0]
        branches = [{**plain, key: _condition(option)} for option in cond.options]
        return branches[0] if len(branches) == 1 else {"$or": branches}
    ors = [{"$or": [{key: _condition(option)} for option in cond.options]} for key, cond in choices]
    return {"$and": [plain, *ors]} if plain else {"$and": ors}


def _by_id(id: object) -> dict[str, str]:
    # Ids are strings, so a plain match can never be read as an operator.
    return {"_id": str(id)}


def _to_mongo(doc: Document) -> Document:
    out = dict(doc)
    out["_id"] = out.pop("id")
    return out


def _from_mongo(doc: Document | None) -> Document | None:
    if doc is None:
        return None
    out = dict(doc)
    out.pop(VIEWS, None)
    return {"id": out.pop("_id"), **out}


def _projection(spec: CollectionSpec) -> dict[str, int] | None:
    return _NO_VIEWS if spec.views else None


def _copy(value: Any) -> Any:
    """A copy of a JSON-like value, cheaper than ``copy.deepcopy`` (no memo, no reducers)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal as BSON would store them: ``True``, ``1`` and ``1.0`` are different values there."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _path_safe(keys: Any) -> bool:
    # A key becomes part of a dotted path only if MongoDB cannot read it as a path or operator.
    return all(isinstance(k, str) and k and "." not in k and "\0" not in k and not k.startswith("$")
               for k in keys)


def diff_update(old: Document, new: Document) -> dict[str, Any] | None:
    """The ``$set``/``$unset`` update that turns stored ``old`` into ``new`` (both in MongoDB
    form), descending into sub-documents both sides hold; None when only a replacement can."""
    if not _path_safe(new) or not _path_safe(old):
        return None
    sets: dict[str, Any] = {}
    unsets: dict[str, str] = {}

    def walk(before: dict[str, Any], after: dict[str, Any], prefix: str) -> None:
        for key in before.keys() - after.keys():
            unsets[prefix + key] = ""
        for key, value in after.items():
            if key in before and _same(before[key], value):
                continue
            previous = before.get(key)
            if (isinstance(value, dict) and isinstance(previous, dict) and value and previous
                    and _path_safe(value) and _path_safe(previous)):
                walk(previous, value, f"{prefix}{key}.")
            else:
                sets[prefix + key] = value

    walk(old, new, "")
    update: dict[str, Any] = {}
    if sets:
        update["$set"] = sets
    if unsets:
        update["$unset"] = unsets
    return update


class _WriteError:
    """One entry of a bulk write's ``writeErrors``, shaped as a single write's error for the
    code that judges duplicate keys."""

    def __init__(self, error: dict[str, Any]):
        self.details = error

    def __str__(self) -> str:
        return str(self.details.get("errmsg", ""))


def _first_write_error(exc: mongo_errors.BulkWriteError) -> tuple[int | None, dict[str, Any]]:
    """The index and details of the write that stopped an ordered batch."""
    errors = (exc.details or {}).get("writeErrors") or []
    if not errors:
        return None, {}
    return errors[0].get("index"), errors[0]


def _labelled(exc: BaseException, label: str) -> bool:
    return isinstance(exc, mongo_errors.PyMongoError) and exc.has_error_label(label)


def translate(exc: BaseException) -> BaseException | None:
    """The storage error a driver error stands for, or None to let it through: duplicate keys
    are judged where they happen, and any other server error is a bug to see, not to retry."""
    if _labelled(exc, TRANSIENT) or (isinstance(exc, mongo_errors.OperationFailure)
                                     and exc.code in (WRITE_CONFLICT, NO_SUCH_TRANSACTION)):
        return WriteConflict(f"the store reported a conflict; run the unit again ({exc})")
    if isinstance(exc, mongo_errors.ConnectionFailure | mongo_errors.WriteConcernError
                  | mongo_errors.ExecutionTimeout):
        return StoreUnavailable(str(exc))
    if isinstance(exc, mongo_errors.OperationFailure) and exc.code in UNAVAILABLE_CODES:
        return StoreUnavailable(str(exc))
    return None


class _MongoWriter(Writer):
    def __init__(self, store: MongoStore, session: Any):
        self.store = store
        self.session = session  # None: no transaction (a standalone server, accepted by setting)
        self.mark: str | None = None
        self._next = 1
        self._last = 0
        self._block = 1
        self._wanted = 0
        # Copies of documents as read in this unit, so that a later put writes only what changed.
        self._read: dict[tuple[str, str], Document] = {}

    def _coll(self, name: str) -> Any:
        self.store.spec(name)
        return self.store.db[name]

    def get(self, collection: str, id: str) -> Document | None:
        doc = self.store._call(self._coll(collection).find_one, _by_id(id), _projection(self.store.spec(collection)),
                               session=self.session)
        if doc is not None:
            self._read[(collection, str(id))] = _copy(doc)
        return _from_mongo(doc)

    def find(self, collection: str, where: Where | None = None, *, order_by: str = "id",
             limit: int | None = None) -> list[Document]:
        return self.store._find(collection, where, order_by=order_by, limit=limit, session=self.session)

    def reserve(self, count: int) -> None:
        self._wanted = max(self._wanted, int(count))

    def _allocate(self) -> int:
        if self.mark is None:
            self.mark = self.store._insert_mark()
        if self._next > self._last:
            # Blocks grow so that a large unit needs few round trips and a small one wastes little.
            size = max(self._block, self._wanted)
            self._last = self.store._allocate_block(size)
            self._next = self._last - size + 1
            self._block = min(self._block * 2, self.store.max_block)
            self._wanted = 0
        seq = self._next
        self._next += 1
        if self.store.hooks.after_allocate:
            self.store.hooks.after_allocate(seq)
        return seq

    def _prepare(self, collection: str, doc: Document) -> Document:
        self.store.check_document(collection, doc)
        doc = dict(doc)
        if self.store.spec(collection).tracked:
            doc["seq"] = self._allocate()
        return doc

    def _body(self, collection: str, doc: Document) -> Document:
        """The stored form of a prepared document: ``_id`` for ``id``, with its encoded views."""
        return self.store._body(collection, doc)

    def _duplicate(self, collection: str, exc: mongo_errors.DuplicateKeyError, id: str) -> Exception:
        if self._is_id_clash(exc):
            return WriteConflict(f"{collection}/{id} was written by a concurrent unit of work")
        return self.store._unique_violation(collection, exc)

    def insert(self, collection: str, doc: Document) -> bool:
        coll = self._coll(collection)
        if self.store._call(coll.find_one, _by_id(doc.get("id")), {"_id": 1}, session=self.session) is not None:
            return False
        doc = self._prepare(collection, doc)
        try:
            self.store._call(coll.insert_one, self._body(collection, doc), session=self.session)
        except mongo_errors.DuplicateKeyError as exc:
            if self.session is None and self._is_id_clash(exc):
                return False  # a concurrent writer inserted the same id first
            # Inside a transaction the error has aborted it: the unit must run again (and will
            # then find the document) or the unique index refuses the document.
            raise self._duplicate(collection, exc, doc["id"]) from exc
        return True

    def get_many(self, collection: str, ids: Any) -> dict[str, Document]:
        coll = self._coll(collection)
        wanted = [str(id) for id in dict.fromkeys(ids)]
        found: dict[str, Document] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            for doc in self.store._call(lambda c=chunk: list(coll.find(
                    {"_id": {"$in": c}}, _projection(self.store.spec(collection)), session=self.session))):
                self._read[(collection, str(doc["_id"]))] = _copy(doc)
                found[str(doc["_id"])] = _from_mongo(doc)  # type: ignore[assignment]
        return found

    def _taken(self, coll: Any, ids: list[str]) -> set[str]:
        taken: set[str] = set()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            taken.update(str(doc["_id"]) for doc in self.store._call(
                lambda c=chunk: list(coll.find({"_id": {"$in": c}}, {"_id": 1}, session=self.session))))
        return taken

    def insert_many(self, collection: str, docs: Any) -> list[bool]:
        coll = self._coll(collection)
        docs = list(docs)
        taken = self._taken(coll, list({str(doc.get("id")) for doc in docs}))
        fresh: list[Document] = []
        answers: list[bool] = []
        for doc in docs:
            new = str(doc.get("id")) not in taken
            if new:
                taken.add(str(doc.get("id")))
                fresh.append(doc)
            answers.append(new)
        if not fresh:
            return answers
        if self.store.spec(collection).tracked:
            self.reserve(len(fresh))
        prepared = [self._prepare(collection, doc) for doc in fresh]
        try:
            self.store._call(coll.insert_many, [self._body(collection, doc) for doc in prepared], ordered=True,
                             session=self.session)
        except mongo_errors.BulkWriteError as exc:
            index, error = _first_write_error(exc)
            if self.session is None and error.get("code") == DUPLICATE_KEY and self._is_id_clash(error):
                # A concurrent writer inserted that id first: the documents before it are stored,
                # that one is not ours, and the rest are inserted one by one.
                clash = prepared[index]["id"]
                answers[next(i for i, doc in enumerate(docs) if str(doc.get("id")) == clash)] = False
                rest = {str(doc["id"]) for doc in prepared[index + 1:]}
                for i, doc in enumerate(docs):
                    if str(doc.get("id")) in rest and answers[i]:
                        answers[i] = self.insert(collection, doc)
                return answers
            translated = self._bulk_error(collection, exc, prepared[index]["id"] if index is not None else "?")
            if translated is exc:
                raise
            raise translated from exc
        return answers

    def put_many(self, collection: str, docs: Any, *, expect_seqs: Any = None) -> list[Document]:
        coll = self._coll(collection)
        docs = list(docs)
        expected = [_UNSET] * len(docs) if expect_seqs is None else list(expect_seqs)
        if len(expected) != len(docs):
            raise ValueError("put_many: one expect_seq per document")
        ids = [str(doc.get("id")) for doc in docs]
        if len(set(ids)) != len(ids) or len(docs) < 2:  # later puts of one id depend on the earlier
            return [self.put(collection, doc, expect_seq=seq) for doc, seq in zip(docs, expected, strict=True)]
        if self.store.spec(collection).tracked:
            self.reserve(len(docs))
        prepared = [self._prepare(collection, doc) for doc in docs]
        operations: list[Any] = []
        operation_ids: list[str] = []
        must_match = upserts = 0
        written: list[tuple[tuple[str, str], Document]] = []
        for doc, expect_seq in zip(prepared, expected, strict=True):
            body = self._body(collection, doc)
            key = (collection, str(body["_id"]))
            before = self._read.get(key)
            operation, counts = self._operation(before, body, expect_seq)
            if operation is not None:
                operations.append(operation)
                operation_ids.append(str(body["_id"]))
                must_match += counts == "match"
                upserts += counts == "upsert"
            if before is not None:
                written.append((key, body))
        if operations:
            try:
                result = self.store._call(coll.bulk_write, operations, ordered=True, session=self.session)
            except mongo_errors.BulkWriteError as exc:
                index, _ = _first_write_error(exc)
                translated = self._bulk_error(collection, exc, operation_ids[index or 0])
                if translated is exc:
                    raise
                raise translated from exc
            if result.matched_count + result.upserted_count < must_match + upserts:
                raise WriteConflict(f"{collection}: a document changed since it was read")
        for key, body in written:
            self._read[key] = _copy(body)
        return prepared

    def _operation(self, before: Document | None, body: Document, expect_seq: Any) -> tuple[Any, str]:
        """The bulk operation :meth:`put` would run for ``body``, and what it must count: "match"
        (a conditional write that must find its document), "upsert" (matches or inserts), "insert"."""
        conditional = expect_seq is not _UNSET and expect_seq is not None
        diffable = before is not None and expect_seq is not None and (
            self.session is not None or (conditional and before.get("seq") == expect_seq))
        by_id = _by_id(body["_id"])
        if diffable:
            filter_ = {**by_id, "seq": expect_seq} if conditional else by_id
            update = diff_update(before, body)  # type: ignore[arg-type]
            if update is None:
                return ReplaceOne(filter_, body), "match"
            if not update:
                return None, ""
            return UpdateOne(filter_, update), "match"
        if expect_seq is _UNSET:
            return ReplaceOne(by_id, body, upsert=True), "upsert"
        if expect_seq is None:
            return InsertOne(body), "insert"
        return ReplaceOne({**by_id, "seq": expect_seq}, body), "match"

    def _bulk_error(self, collection: str, exc: mongo_errors.BulkWriteError, id: str) -> BaseException:
        """The storage error for a failed batch: a duplicate key as for one write, a write conflict
        reported per operation as for one write; anything else is a bug to see."""
        _, error = _first_write_error(exc)
        code = error.get("code")
        if code == DUPLICATE_KEY:
            if self._is_id_clash(error):
                return WriteConflict(f"{collection}/{id} was written by a concurrent unit of work")
            return self.store._unique_violation(collection, _WriteError(error))
        if code in (WRITE_CONFLICT, NO_SUCH_TRANSACTION):
            return WriteConflict(f"the store reported a conflict; run the unit again ({exc})")
        return exc

    @staticmethod
    def _is_id_clash(exc: Any) -> bool:
        details = exc if isinstance(exc, dict) else getattr(exc, "details", None) or {}
        return "_id" in (details.get("keyPattern") or {}) or "_id_" in str(exc)

    def put(self, collection: str, doc: Document, *, expect_seq: Any = _UNSET) -> Document:
        coll = self._coll(collection)
        prepared = self._prepare(collection, doc)
        body = self._body(collection, prepared)
        key = (collection, str(body["_id"]))
        before = self._read.get(key)
        conditional = expect_seq is not _UNSET and expect_seq is not None
        # Without a transaction a document read earlier may have changed since, unless the
        # write is conditional on its seq (every write of a tracked document changes its seq).
        diffable = before is not None and expect_seq is not None and (
            self.session is not None or (conditional and before.get("seq") == expect_seq))
        try:
            if diffable:
                self._update(coll, collection, before, body, expect_seq if conditional else _UNSET)
            elif expect_seq is _UNSET:
                self.store._call(coll.replace_one, _by_id(body["_id"]), body, upsert=True, session=self.session)
            elif expect_seq is None:
                self.store._call(coll.insert_one, body, session=self.session)
            else:
                result = self.store._call(coll.replace_one, {**_by_id(body["_id"]), "seq": expect_seq}, body,
                                          session=self.session)
                if result.matched_count == 0:
                    raise WriteConflict(f"{collection}/{prepared['id']} changed since it was read")
        except mongo_errors.DuplicateKeyError as exc:
            raise self._duplicate(collection, exc, prepared["id"]) from exc
        if before is not None:
            self._read[key] = _copy(body)
        return prepared

    def _update(self, coll: Any, collection: str, before: Document, body: Document, expect_seq: Any) -> None:
        update = diff_update(before, body)
        if update is None:
            filter_ = _by_id(body["_id"]) if expect_seq is _UNSET else {**_by_id(body["_id"]), "seq": expect_seq}
            result = self.store._call(coll.replace_one, filter_, body, session=self.session)
        elif not update:
            return  # nothing changed (an untracked document written back as it was read)
        elif expect_seq is _UNSET:
            result = self.store._call(coll.update_one, _by_id(body["_id"]), update, session=self.session)
        else:
            result = self.store._call(coll.update_one, {**_by_id(body["_id"]), "seq": expect_seq}, update,
                                      session=self.session)
        if result.matched_count == 0:
            raise WriteConflict(f"{collection}/{body['_id']} changed since it was read")

    def delete(self, collection: str, id: str) -> bool:
        if self.store.spec(collection).tracked:
            raise SchemaError(f"{collection} is tracked: record a status change instead of deleting")
        self._read.pop((collection, str(id)), None)
        return self.store._call(self._coll(collection).delete_one, _by_id(id), session=self.session).deleted_count > 0

    def remove(self, collection: str, where: Where, *, limit: int | None = None) -> int:
        self.store.check_removal(collection, where, limit)
        coll = self._coll(collection)
        query = _query(where)
        if limit is not None:
            # delete_many has no limit: the ids of at most ``limit`` matches, then those.
            ids = [doc["_id"] for doc in self.store._call(
                lambda: list(coll.find(query, {"_id": 1}, session=self.session).limit(limit)))]
            if not ids:
                return 0
            query = {"_id": {"$in": ids}}
        removed = self.store._call(coll.delete_many, query, session=self.session).deleted_count
        # Documents read earlier in this unit are gone: a later put of one must not diff against them.
        for key in [key for key in self._read if key[0] == collection]:
            del self._read[key]
        return int(removed)

    def increment(self, collection: str, id: str, field: str, by: int = 1,
                  defaults: Document | None = None) -> Document:
        if self.store.spec(collection).tracked:
            raise SchemaError("increment is for untracked collections (counters, rate limits)")
        self._read.pop((collection, str(id)), None)
        on_insert = {k: v for k, v in (defaults or {}).items() if k not in ("id", field)}
        update: dict[str, Any] = {"$inc": {field: by}}
        if on_insert:
            update["$setOnInsert"] = on_insert
        doc = self.store._call(self._coll(collection).find_one_and_update, _by_id(id), update, upsert=True,
                               return_document=ReturnDocument.AFTER, session=self.session)
        return _from_mongo(doc)  # type: ignore[return-value]

    def advance(self, collection: str, id: str, field: str, value: Any) -> Any:
        return self.store._advance(collection, id, field, value)


class MongoStore(Store):
    """Store on MongoDB. ``mongodb://host:port/dbname?replicaSet=rs0`` (the database name
    defaults to ``kunjung``). Pass ``client`` to use an existing client (a test's stand-in),
    ``database`` to name the database, ``allow_standalone`` to accept a server without
    transactions (a push cut short may then leave part of its writes)."""

    pending_lease = 120.0  # seconds; above the server's 60 s transaction lifetime
    max_block = 256  # most sequence numbers taken in one round trip
    max_commit_time_ms = 10_000
    commit_retry = RetryPolicy(attempts=5, initial=0.05, factor=2.0, cap=1.0)

    def __init__(self, url: str, collections: list[CollectionSpec], *, client: Any = None,
                 database: str | None = None, allow_standalone: bool = False, timeout_ms: int = 5000,
                 strict_queries: bool | None = None):
        super().__init__(collections, strict_queries=strict_queries)
        self.url = url
        if client is None:
            import pymongo

            client = pymongo.MongoClient(url, serverSelectionTimeoutMS=timeout_ms, tz_aware=False,
                                         uuidRepresentation="standard")
        self.client = client
        # Writes outside a transaction (counter, marks, clock) wait for a majority as well;
        # inside one, the transaction's own write concern applies.
        if database is not None:
            self.db = client.get_database(database, write_concern=MAJORITY)
        else:
            self.db = client.get_default_database(default="kunjung", write_concern=MAJORITY)
        self.allow_standalone = allow_standalone
        self._topology: str | None = None

    def _body(self, collection: str, doc: Document) -> Document:
        body = _to_mongo(doc)
        spec = self.spec(collection)
        if spec.views:
            made = self.view_bytes(collection, doc)
            if made is not None:
                body[VIEWS] = {name: pack_view(view) for name, view in zip(spec.views, made, strict=True)}
        return body

    def _ensure_views(self, spec: CollectionSpec) -> None:
        """Encode every stored document's views again when the store holds views of another version
        (or none yet). Each update writes only ``_views``, conditional on the document's ``seq``: a
        document written meanwhile got its views from its writer."""
        if not spec.views:
            return
        meta = self.db[_META]
        key = f"views:{spec.name}"
        stored = self._call(meta.find_one, {"_id": key})
        if stored is not None and stored.get("version") == spec.views_version:
            return
        log.info("%s: encoding the views of every stored document (views version %s)", spec.name, spec.views_version)
        coll = self.db[spec.name]
        for doc in self._cursor(spec.name, None, order_by="id", batch_size=_CHUNK):
            made = self.view_bytes(spec.name, doc)
            update = {"$set": {VIEWS: {name: pack_view(view) for name, view in zip(spec.views, made, strict=True)}}} \
                if made is not None \
                else {"$unset": {VIEWS: ""}}
            self._call(coll.update_one, {"_id": doc["id"], "seq": doc["seq"]}, update)
        self._call(meta.update_one, {"_id": key}, {"$set": {"version": spec.views_version}}, upsert=True)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except mongo_errors.PyMongoError as exc:
            translated = translate(exc)
            if translated is None:
                raise
            raise translated from exc

    # -- topology ---------------------------------------------------------------------
    def topology(self) -> str:
        """``"replica set"``, ``"mongos"`` or ``"standalone"``, from the server's ``hello``.

        Only an answer is remembered; a failure raises :class:`StoreUnavailable` and the next
        call asks again, so a server that was down at start-up is judged when it is back."""
        if self._topology is None:
            try:
                hello = self.client.admin.command("hello")
            except (mongo_errors.PyMongoError, NotImplementedError) as exc:
                raise StoreUnavailable(f"MongoDB did not answer hello: {exc}") from exc
            if hello.get("msg") == "isdbgrid":
                self._topology = SHARDED
            elif hello.get("setName"):
                self._topology = REPLICA_SET
            else:
                self._topology = STANDALONE
        return self._topology

    def uses_transactions(self) -> bool:
        """Multi-document transactions need a replica set or a mongos; a lone mongod has none.
        Raises :class:`StoreMisconfigured` for a standalone server not accepted by setting."""
        if self.topology() != STANDALONE:
            return True
        if not self.allow_standalone:
            raise StoreMisconfigured(
                "MongoDB at this URL is a standalone server, which has no multi-document transactions; "
                "kunjung needs a replica set (a single node will do: start mongod with --replSet rs0, "
                "run rs.initiate() once and add ?replicaSet=rs0 to the URL) or a mongos. To run without "
                f"transactions anyway, set {ALLOW_STANDALONE_SETTING}=true: a push cut short may then "
                "leave some of its writes, which a resend repairs.")
        return False

    # -- life cycle -------------------------------------------------------------------
    def ensure_schema(self) -> None:
        self.uses_transactions()
        meta = self.db[_META]
        self._call(meta.update_one, {"_id": "seq"}, {"$setOnInsert": {"value": 0}}, upsert=True)
        self._call(meta.update_one, {"_id": "schema_version"}, {"$setOnInsert": {"value": 0}}, upsert=True)
        self._ensure_pending()
        for spec in self.collections.values():
            coll = self.db[spec.name]
            if spec.tracked:
                self._call(coll.create_index, [("seq", ASCENDING)], name="seq", unique=True)
            for name in spec.geo:
                self._call(coll.create_index, [(name, "2dsphere")], name=f"{name}_2dsphere")
            for unique, indexes in ((True, spec.unique), (False, spec.indexes)):
                for index in indexes:
                    if index in (("id",), ("seq",)):
                        continue  # the primary key and the sequence index exist already
                    keys = [(_key(f), ASCENDING) for f in index]
                    # Unique indexes ignore documents lacking the field, as SQLite ignores NULLs.
                    options: dict[str, Any] = {"name": "_".join(index), "unique": unique}
                    if unique:
                        options["partialFilterExpression"] = {f: {"$exists": True} for f in index}
                    self._call(coll.create_index, keys, **options)
            if spec.retired:
                names = set(self._call(coll.index_information))
                for index in spec.retired:
                    if "_".join(index) in names:
                        with contextlib.suppress(mongo_errors.OperationFailure):  # dropped by another worker
                            self._call(coll.drop_index, "_".join(index))
        for spec in self.collections.values():
            self._ensure_views(spec)
        for migration in pending_migrations(self.schema_version()):
            self.unit_of_work(lambda tx, m=migration: self._migrate(tx, m))

    def _migrate(self, tx: _MongoWriter, migration: Any) -> None:
        # The version is read and written in the migration's own unit, so that two workers
        # starting together migrate once: the second conflicts, runs again and finds it done.
        meta = self.db[_META]
        doc = self._call(meta.find_one, {"_id": "schema_version"}, session=tx.session)
        if doc is not None and int(doc["value"]) >= migration.version:
            return
        migration.migrate(self, tx)
        self._call(meta.update_one, {"_id": "schema_version"}, {"$set": {"value": migration.version}},
                   upsert=True, session=tx.session)

    def _ensure_pending(self) -> None:
        coll = self.db[_PENDING]
        lease = int(self.pending_lease)
        for name, index in self._call(coll.index_information).items():
            if [k for k, _ in index.get("key", [])] == ["at"] and index.get("expireAfterSeconds") != lease:
                try:  # an index of an earlier kunjung (no TTL), or another lease
                    self._call(coll.drop_index, name)
                except StoreUnavailable:
                    raise
                except mongo_errors.OperationFailure:
                    pass  # another worker dropped it first
        self._call(coll.create_index, [("at", ASCENDING)], name="at_ttl", expireAfterSeconds=lease)
        self._call(coll.create_index, [("floor", ASCENDING)], name="floor")
        # Marks of an earlier kunjung carried the worker's time as a number, which the TTL index
        # never expires; they belong to writers long gone.
        self._call(coll.delete_many, {"at": {"$not": {"$type": "date"}}})

    def schema_version(self) -> int:
        doc = self._call(self.db[_META].find_one, {"_id": "schema_version"})
        return int(doc["value"]) if doc else 0

    def ping(self) -> None:
        try:
            self.client.admin.command("ping")
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    def close(self) -> None:
        self.client.close()

    def _unique_violation(self, collection: str, exc: Any) -> Exception:
        details = getattr(exc, "details", None) or {}
        pattern = tuple(details.get("keyPattern") or ())
        for index in self.spec(collection).unique:
            if set(index) == set(pattern) or "_".join(index) in str(exc):
                return UniqueViolation(collection, index)
        return UniqueViolation(collection, pattern or ("id",))

    # -- sequence ---------------------------------------------------------------------
    def _counter(self) -> int:
        doc = self._call(self.db[_META].find_one, {"_id": "seq"})
        return int(doc["value"]) if doc else 0

    def _insert_mark(self) -> str:
        mark = uuid.uuid4().hex
        floor = self._counter()
        self._call(self.db[_PENDING].update_one, {"_id": mark},
                   {"$currentDate": {"at": True}, "$setOnInsert": {"floor": floor}}, upsert=True)
        return mark

    def _allocate_block(self, size: int) -> int:
        """Take ``size`` numbers at once; returns the last of them."""
        doc = self._call(self.db[_META].find_one_and_update, {"_id": "seq"}, {"$inc": {"value": size}},
                         upsert=True, return_document=ReturnDocument.AFTER)
        return int(doc["value"])

    def visible_seq(self) -> int:
        counter = self._counter()  # the counter first, then the marks: see the module note
        lowest = self._call(self.db[_PENDING].find_one, {}, {"floor": 1}, sort=[("floor", ASCENDING)])
        return counter if lowest is None else min(counter, int(lowest["floor"]))

    def _advance(self, collection: str, id: str, field: str, value: Any) -> Any:
        if self.spec(collection).tracked:
            raise SchemaError("advance is for untracked collections (the clock)")
        coll = self.db[collection]
        for _ in range(2):  # two first upserts of one id may race; the loser's retry matches
            try:
                doc = self._call(coll.find_one_and_update, _by_id(id), {"$max": {field: value}}, upsert=True,
                                 return_document=ReturnDocument.AFTER)
                return doc[field]
            except mongo_errors.DuplicateKeyError:
                continue
        raise WriteConflict(f"{collection}/{id} could not be advanced")

    def advance(self, collection: str, id: str, field: str, value: Any) -> Any:
        return self._advance(collection, id, field, value)

    # -- reads ------------------------------------------------------------------------
    def _find(self, collection: str, where: Where | None, *, order_by: str = "id", after: Any = None,
              limit: int | None = None, session: Any = None, batch_size: int | None = None) -> list[Document]:
        return list(self._cursor(collection, where, order_by=order_by, after=after, limit=limit,
                                 session=session, batch_size=batch_size))

    def _cursor(self, collection: str, where: Where | None, *, order_by: str = "id", after: Any = None,
                limit: int | None = None, session: Any = None, batch_size: int | None = None,
                projection: dict[str, Any] | None = None, raw: bool = False) -> Iterator[Document]:
        self.check_where(collection, where)
        self.check_query(collection, where, order_by)
        field, descending = self.check_order(collection, order_by)
        key = _key(field)
        query = _query(where)
        if after is not None:
            op = "$lt" if descending else "$gt"
            if field in UNIQUE_ORDERS:
                keyset: dict[str, Any] = {key: {op: after}}
            else:
                value, last_id = after
                keyset = {"$or": [{key: {op: value}}, {key: {"$eq": value}, "_id": {op: last_id}}]}
            query = {"$and": [query, keyset]} if query else keyset
        direction = -1 if descending else 1
        # id and seq are unique: a tie-break would only stop the (…, seq) indexes serving the sort.
        sort = [(key, direction)] + ([] if field in UNIQUE_ORDERS else [("_id", direction)])
        cursor = self.db[collection].find(query, projection or _projection(self.spec(collection)),
                                          session=session).sort(sort)
        if limit is not None:
            cursor = cursor.limit(int(limit))
        if batch_size:
            cursor = cursor.batch_size(batch_size)
        try:
            for doc in cursor:
                yield doc if raw else _from_mongo(doc)  # type: ignore[misc]
        except mongo_errors.PyMongoError as exc:
            translated = translate(exc)
            if translated is None:
                raise
            raise translated from exc

    def get(self, collection: str, id: str) -> Document | None:
        spec = self.spec(collection)
        return _from_mongo(self._call(self.db[collection].find_one, _by_id(id), _projection(spec)))

    def find(self, collection: str, where: Where | None = None, *, order_by: str = "id",
             after: Any = None, limit: int | None = None) -> list[Document]:
        return self._find(collection, where, order_by=order_by, after=after, limit=limit)

    def iterate(self, collection: str, where: Where | None = None, *, order_by: str = "id",
                batch: int = 500) -> Iterator[Document]:
        # One server-side cursor fetched in batches keeps memory flat.
        return self._cursor(collection, where, order_by=order_by, batch_size=batch)

    def count(self, collection: str, where: Where | None = None) -> int:
        self.check_where(collection, where)
        self.check_query(collection, where, None)
        return int(self._call(self.db[collection].count_documents, _query(where)))

    def changes(self, collection: str, since: int, *, where: Where | None = None,
                limit: int = 500, upto: int | None = None) -> list[Document]:
        bound = self._changes_bound(collection, upto)
        return self._find(collection, {**(where or {}), "seq": Range(gt=since, lte=bound)},
                          order_by="seq", limit=limit)

    def encoded_changes(self, collection: str, view: str, since: int, *, where: Where | None = None,
                        limit: int = 500, upto: int | None = None) -> list[tuple[int, str, bytes]]:
        bound = self._changes_bound(collection, upto, view)
        found = list(self._cursor(collection, {**(where or {}), "seq": Range(gt=since, lte=bound)}, order_by="seq",
                                  limit=limit, projection={"seq": 1, f"{VIEWS}.{view}": 1}, raw=True))
        # A document without its view (written before views were stored) is read whole and encoded.
        missing = [doc["_id"] for doc in found if view not in (doc.get(VIEWS) or {})]
        whole = {doc["id"]: doc for doc in self._find(collection, {"id": In(missing)})} if missing else {}
        return [(int(doc["seq"]), str(doc["_id"]), unpack_view(doc[VIEWS][view]) if doc["_id"] not in whole
                 else self.view_of(collection, view, whole[doc["_id"]])) for doc in found]

    # -- writes -----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Writer]:
        outer = self.current_writer()
        if outer is not None:  # nested units of work join the outer one
            yield outer
            return
        transactional = self.uses_transactions()
        session = self._call(self.client.start_session) if transactional else None
        writer = _MongoWriter(self, session)
        self._local.writer = writer
        outcome_known = True
        try:
            if session is None:
                yield writer
                return
            session.start_transaction(read_concern=ReadConcern("snapshot"), write_concern=MAJORITY,
                                      read_preference=ReadPreference.PRIMARY,
                                      max_commit_time_ms=self.max_commit_time_ms)
            try:
                yield writer
            except BaseException:
                self._abort(session)
                raise
            try:
                self._commit(session)
            except CommitOutcomeUnknown:
                outcome_known = False
                raise
        finally:
            self._local.writer = None
            # Only after the commit (or abort) may readers pass this writer's numbers; if the
            # outcome is unknown the commit may still become visible, so the lease ends the mark.
            if outcome_known:
                self._release(writer)
            if session is not None:
                session.end_session()

    def _abort(self, session: Any) -> None:
        if session.in_transaction:
            # The transactions specification: abort errors are ignored (the server ends it anyway).
            with contextlib.suppress(mongo_errors.PyMongoError):
                session.abort_transaction()

    def _commit(self, session: Any) -> None:
        """Commit, retrying the commit alone while its outcome is unknown (as ``with_transaction``)."""
        last: BaseException | None = None
        for attempt in range(1, self.commit_retry.attempts + 1):
            if last is not None:
                self.hooks.sleep(self.commit_retry.delay(attempt - 1))
            try:
                session.commit_transaction()
                return
            except mongo_errors.PyMongoError as exc:
                if exc.has_error_label(UNKNOWN_COMMIT):
                    if isinstance(exc, mongo_errors.OperationFailure) and exc.code == MAX_TIME_MS_EXPIRED:
                        raise CommitOutcomeUnknown(f"the commit timed out; it may have happened ({exc})") from exc
                    last = exc
                    continue
                translated = translate(exc)
                if translated is None:
                    raise
                raise translated from exc
        raise CommitOutcomeUnknown(f"the store did not say whether the commit happened ({last})") from last

    def _release(self, writer: _MongoWriter) -> None:
        if writer.mark is not None:
            # If the store is unreachable now, the lease ends the mark; readers wait, never skip.
            with contextlib.suppress(StoreUnavailable):
                self._call(self.db[_PENDING].delete_one, {"_id": writer.mark})
            writer.mark = None

    def backup(self, destination: str) -> None:
        raise SchemaError("use mongodump for MongoDB backups (see README, 'Care of the data')")
