"""The production backend: MongoDB through pymongo, one MongoDB collection per collection.

The change sequence is kept commit-ordered with operations that mongomock-ng also
supports, so the same code is exercised on the development machines (DESIGN.md §4):

1. a writer first inserts a *pending mark* carrying the counter value it read (its floor);
2. it allocates numbers with ``find_one_and_update($inc)``, each above that floor;
3. it writes its documents, then deletes the mark.

A reader reads the counter *first* and the marks *second*, and reads no further than the
lowest floor of a live mark. Any number at or below the counter it read was allocated
after its writer's mark was inserted, so the reader sees that mark unless the write has
already committed. A mark older than ``pending_lease`` seconds belongs to a writer that
died and stops holding readers back.

On a replica set the documents of one unit of work are written in a multi-document
transaction; the counter and marks stay outside it so that they are visible at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .base import (
    AnyOf,
    CollectionSpec,
    Document,
    In,
    Range,
    SchemaError,
    Store,
    StoreUnavailable,
    UniqueViolation,
    Where,
    WriteConflict,
    Writer,
)
from .migrations import pending_migrations

_UNSET = ...
_META = "kunjung_meta"
_PENDING = "kunjung_pending"


def _errors() -> Any:
    import pymongo.errors

    return pymongo.errors


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


def _query(where: Where | None) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = []
    for field, cond in (where or {}).items():
        key = "_id" if field == "id" else field
        if isinstance(cond, AnyOf):
            clauses.append({"$or": [{key: _condition(option)} for option in cond.options]} if cond.options
                           else {key: {"$in": []}})
        else:
            clauses.append({key: _condition(cond)})
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


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
    out = {"id": out.pop("_id"), **out}
    return out


class _MongoWriter(Writer):
    def __init__(self, store: MongoStore, session: Any):
        self.store = store
        self.session = session
        self.mark: str | None = None

    def _coll(self, name: str) -> Any:
        self.store.spec(name)
        return self.store.db[name]

    def get(self, collection: str, id: str) -> Document | None:
        return _from_mongo(self._coll(collection).find_one(_by_id(id), session=self.session))

    def find(self, collection: str, where: Where | None = None, *, order_by: str = "id",
             limit: int | None = None) -> list[Document]:
        return self.store._find(collection, where, order_by=order_by, limit=limit, session=self.session)

    def _allocate(self) -> int:
        if self.mark is None:
            self.mark = self.store._insert_mark()
        seq = self.store._next_seq()
        if self.store.hooks.after_allocate:
            self.store.hooks.after_allocate(seq)
        return seq

    def _prepare(self, collection: str, doc: Document) -> Document:
        self.store.check_document(collection, doc)
        doc = dict(doc)
        if self.store.spec(collection).tracked:
            doc["seq"] = self._allocate()
        return doc

    def insert(self, collection: str, doc: Document) -> bool:
        coll = self._coll(collection)
        if coll.find_one(_by_id(doc.get("id")), {"_id": 1}, session=self.session) is not None:
            return False
        doc = self._prepare(collection, doc)
        try:
            coll.insert_one(_to_mongo(doc), session=self.session)
        except _errors().DuplicateKeyError as exc:
            if self._is_id_clash(exc):
                return False  # a concurrent writer inserted the same id first
            raise self.store._unique_violation(collection, exc) from exc
        return True

    @staticmethod
    def _is_id_clash(exc: Any) -> bool:
        details = getattr(exc, "details", None) or {}
        return "_id" in (details.get("keyPattern") or {}) or "_id_" in str(exc)

    def put(self, collection: str, doc: Document, *, expect_seq: Any = _UNSET) -> Document:
        coll = self._coll(collection)
        prepared = self._prepare(collection, doc)
        body = _to_mongo(prepared)
        try:
            if expect_seq is _UNSET:
                coll.replace_one(_by_id(body["_id"]), body, upsert=True, session=self.session)
            elif expect_seq is None:
                try:
                    coll.insert_one(body, session=self.session)
                except _errors().DuplicateKeyError as exc:
                    if self._is_id_clash(exc):
                        raise WriteConflict(f"{collection}/{prepared['id']} exists already") from exc
                    raise
            else:
                result = coll.replace_one({**_by_id(body["_id"]), "seq": expect_seq}, body,
                                          session=self.session)
                if result.matched_count == 0:
                    raise WriteConflict(f"{collection}/{prepared['id']} changed since it was read")
        except _errors().DuplicateKeyError as exc:
            raise self.store._unique_violation(collection, exc) from exc
        return prepared

    def delete(self, collection: str, id: str) -> bool:
        if self.store.spec(collection).tracked:
            raise SchemaError(f"{collection} is tracked: record a status change instead of deleting")
        return self._coll(collection).delete_one(_by_id(id), session=self.session).deleted_count > 0

    def increment(self, collection: str, id: str, field: str, by: int = 1,
                  defaults: Document | None = None) -> Document:
        if self.store.spec(collection).tracked:
            raise SchemaError("increment is for untracked collections (counters, rate limits)")
        from pymongo import ReturnDocument

        on_insert = {k: v for k, v in (defaults or {}).items() if k not in ("id", field)}
        update: dict[str, Any] = {"$inc": {field: by}}
        if on_insert:
            update["$setOnInsert"] = on_insert
        doc = self._coll(collection).find_one_and_update(
            _by_id(id), update, upsert=True, return_document=ReturnDocument.AFTER,
            session=self.session)
        return _from_mongo(doc)  # type: ignore[return-value]


class MongoStore(Store):
    """Store on MongoDB. ``mongodb://host:port/dbname?replicaSet=rs0`` (the database
    name defaults to ``kunjung``). Pass ``client`` to use an existing client, such as
    a mongomock-ng one in tests."""

    pending_lease = 300.0

    def __init__(self, url: str, collections: list[CollectionSpec], *, client: Any = None,
                 transactions: bool | None = None, timeout_ms: int = 5000):
        super().__init__(collections)
        self.url = url
        if client is None:
            import pymongo

            client = pymongo.MongoClient(url, serverSelectionTimeoutMS=timeout_ms, tz_aware=False,
                                         uuidRepresentation="standard")
        self.client = client
        try:
            default_db = client.get_default_database(default="kunjung")
        except Exception:  # noqa: BLE001 - mongomock and URLs without a db name
            default_db = client["kunjung"]
        self.db = default_db
        self._transactions = transactions
        self._local = threading.local()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (_errors().ServerSelectionTimeoutError, _errors().AutoReconnect,
                _errors().NetworkTimeout) as exc:
            raise StoreUnavailable(str(exc)) from exc

    # -- life cycle -------------------------------------------------------------------
    def uses_transactions(self) -> bool:
        """Multi-document transactions need a replica set; a lone mongod has none."""
        if self._transactions is None:
            try:
                hello = self.client.admin.command("hello")
                self._transactions = bool(hello.get("setName"))
            except Exception:  # noqa: BLE001 - a fake or old server answers no "hello"
                self._transactions = False
        return self._transactions

    def ensure_schema(self) -> None:
        from pymongo import ASCENDING

        self._call(self.db[_META].update_one, {"_id": "seq"}, {"$setOnInsert": {"value": 0}}, upsert=True)
        self.db[_META].update_one({"_id": "schema_version"}, {"$setOnInsert": {"value": 0}}, upsert=True)
        self.db[_PENDING].create_index([("at", ASCENDING)])
        for spec in self.collections.values():
            coll = self.db[spec.name]
            if spec.tracked:
                coll.create_index([("seq", ASCENDING)], name="seq", unique=True)
            for name in spec.geo:
                coll.create_index([(name, "2dsphere")], name=f"{name}_2dsphere")
            for unique, indexes in ((True, spec.unique), (False, spec.indexes)):
                for index in indexes:
                    keys = [("_id" if f == "id" else f, ASCENDING) for f in index]
                    # Unique indexes ignore documents lacking the field, as SQLite ignores NULLs.
                    options: dict[str, Any] = {"name": "_".join(index), "unique": unique}
                    if unique:
                        options["partialFilterExpression"] = {f: {"$exists": True} for f in index}
                    coll.create_index(keys, **options)
        version = self.schema_version()
        for migration in pending_migrations(version):
            with self.transaction() as tx:
                migration.migrate(self, tx)
            self.db[_META].update_one({"_id": "schema_version"}, {"$set": {"value": migration.version}})

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
        doc = self.db[_META].find_one({"_id": "seq"})
        return int(doc["value"]) if doc else 0

    def _insert_mark(self) -> str:
        mark = uuid.uuid4().hex
        self._call(self.db[_PENDING].insert_one, {"_id": mark, "floor": self._counter(), "at": time.time()})
        return mark

    def _next_seq(self) -> int:
        from pymongo import ReturnDocument

        doc = self._call(self.db[_META].find_one_and_update, {"_id": "seq"}, {"$inc": {"value": 1}},
                         upsert=True, return_document=ReturnDocument.AFTER)
        return int(doc["value"])

    def visible_seq(self) -> int:
        counter = self._call(self._counter)  # the counter first, then the marks: see the module note
        live = time.time() - self.pending_lease
        floors = [m["floor"] for m in self.db[_PENDING].find({"at": {"$gt": live}}, {"floor": 1})]
        return min([counter, *floors])

    # -- reads ------------------------------------------------------------------------
    def _find(self, collection: str, where: Where | None, *, order_by: str = "id", after: Any = None,
              limit: int | None = None, session: Any = None, batch_size: int | None = None) -> list[Document]:
        return list(self._cursor(collection, where, order_by=order_by, after=after, limit=limit,
                                 session=session, batch_size=batch_size))

    def _cursor(self, collection: str, where: Where | None, *, order_by: str = "id", after: Any = None,
                limit: int | None = None, session: Any = None,
                batch_size: int | None = None) -> Iterator[Document]:
        self.check_where(collection, where)
        field, descending = self.check_order(collection, order_by)
        key = "_id" if field == "id" else field
        query = _query(where)
        if after is not None:
            op = "$lt" if descending else "$gt"
            if field in ("id", "seq"):
                keyset = {key: {op: after}}
            else:
                value, last_id = after
                keyset = {"$or": [{key: {op: value}}, {key: {"$eq": value}, "_id": {op: last_id}}]}
            query = {"$and": [query, keyset]} if query else keyset
        direction = -1 if descending else 1
        sort = [(key, direction)] + ([] if key == "_id" else [("_id", direction)])
        cursor = self.db[collection].find(query, session=session).sort(sort)
        if limit is not None:
            cursor = cursor.limit(int(limit))
        if batch_size:
            cursor = cursor.batch_size(batch_size)
        try:
            for doc in cursor:
                yield _from_mongo(doc)  # type: ignore[misc]
        except (_errors().ServerSelectionTimeoutError, _errors().AutoReconnect) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def get(self, collection: str, id: str) -> Document | None:
        self.spec(collection)
        return _from_mongo(self._call(self.db[collection].find_one, _by_id(id)))

    def find(self, collection: str, where: Where | None = None, *, order_by: str = "id",
             after: Any = None, limit: int | None = None) -> list[Document]:
        return self._find(collection, where, order_by=order_by, after=after, limit=limit)

    def iterate(self, collection: str, where: Where | None = None, *, order_by: str = "id",
                batch: int = 500) -> Iterator[Document]:
        # One server-side cursor fetched in batches keeps memory flat.
        return self._cursor(collection, where, order_by=order_by, batch_size=batch)

    def count(self, collection: str, where: Where | None = None) -> int:
        self.check_where(collection, where)
        return int(self._call(self.db[collection].count_documents, _query(where)))

    def changes(self, collection: str, since: int, *, where: Where | None = None,
                limit: int = 500, upto: int | None = None) -> list[Document]:
        if not self.spec(collection).tracked:
            raise SchemaError(f"{collection} is not tracked")
        bound = self.visible_seq() if upto is None else upto
        return self._find(collection, {**(where or {}), "seq": Range(gt=since, lte=bound)},
                          order_by="seq", limit=limit)

    # -- writes -----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Writer]:
        outer = getattr(self._local, "writer", None)
        if outer is not None:  # nested units of work join the outer one
            yield outer
            return
        session = self.client.start_session() if self.uses_transactions() else None
        writer = _MongoWriter(self, session)
        self._local.writer = writer
        try:
            if session is None:
                yield writer
            else:
                with session.start_transaction():
                    yield writer
        finally:
            # Only after the commit (or abort) may readers pass this writer's numbers.
            self._local.writer = None
            self._release(writer)
            if session is not None:
                session.end_session()

    def _release(self, writer: _MongoWriter) -> None:
        if writer.mark is not None:
            self.db[_PENDING].delete_one({"_id": writer.mark})
            writer.mark = None

    def backup(self, destination: str) -> None:
        raise SchemaError("use mongodump for MongoDB backups (see README, 'Care of the data')")
