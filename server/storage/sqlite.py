"""The embedded backend: stdlib sqlite3 on disk, WAL mode, one writer at a time.

One table per collection holds the JSON body plus a column per indexed field, so
queries use ordinary B-tree indexes. ``BEGIN IMMEDIATE`` takes the write lock before a
unit of work reads anything, which makes the change sequence commit-ordered for free:
a number is allocated and committed while no other writer can run.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from .base import (
    UNIQUE_ORDERS,
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
    log,
    pack_view,
    unpack_view,
)
from .migrations import pending_migrations

_UNSET = ...
# Ids per "IN (...)" statement: well below SQLite's bound on parameters (999 before 3.32).
_CHUNK = 500


def _dumps(doc: Document) -> str:
    # orjson is several times faster than json here; it also refuses integers beyond 64 bits.
    return orjson.dumps(doc).decode("utf-8")


def _table(name: str) -> str:
    return f'"c_{name}"'


def _column(name: str) -> str:
    return "id" if name == "id" else "seq" if name == "seq" else f'"f_{name}"'


def _view_column(name: str) -> str:
    return f'"v_{name}"'


def _view_values(store: SQLiteStore, collection: str, doc: Document) -> list[bytes | None]:
    """The stored form of a document's encoded views, one per view of the collection (NULL: none)."""
    spec = store.spec(collection)
    if not spec.views:
        return []
    made = store.view_bytes(collection, doc)
    if made is None:
        return [None] * len(spec.views)
    return [pack_view(view) for view in made]


def _views_key(collection: str) -> str:
    return f"views:{collection}"


def _condition(field: str, cond: Any, params: list[Any]) -> str:
    col = _column(field)
    if isinstance(cond, In):
        if not cond.values:
            return "0"
        params.extend(cond.values)
        return f"{col} IN ({','.join('?' * len(cond.values))})"
    if isinstance(cond, Range):
        parts = []
        for op, value in ((">=", cond.gte), (">", cond.gt), ("<", cond.lt), ("<=", cond.lte)):
            if value is not None:
                parts.append(f"{col} {op} ?")
                params.append(value)
        return " AND ".join(parts) or "1"
    if isinstance(cond, AnyOf):
        if not cond.options:
            return "0"
        return "(" + " OR ".join(f"({_condition(field, option, params)})" for option in cond.options) + ")"
    if cond is None:
        return f"{col} IS NULL"
    params.append(cond)
    return f"{col} = ?"


def _where_sql(where: Where | None, params: list[Any]) -> str:
    clauses = [_condition(field, cond, params) for field, cond in (where or {}).items()]
    return " AND ".join(clauses) if clauses else "1"


class _SQLiteWriter(Writer):
    def __init__(self, store: SQLiteStore, conn: sqlite3.Connection):
        self.store = store
        self.conn = conn

    def get(self, collection: str, id: str) -> Document | None:
        return self.store._get(self.conn, collection, id)

    def find(self, collection: str, where: Where | None = None, *, order_by: str = "id",
             limit: int | None = None) -> list[Document]:
        return self.store._find(self.conn, collection, where, order_by=order_by, limit=limit)

    def _allocate(self) -> int:
        (seq,) = self.conn.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'seq' RETURNING value").fetchone()
        if self.store.hooks.after_allocate:
            self.store.hooks.after_allocate(seq)
        return int(seq)

    def _write(self, collection: str, doc: Document, verb: str) -> Document:
        spec = self.store.spec(collection)
        self.store.check_document(collection, doc)
        doc = dict(doc)
        if spec.tracked:
            doc["seq"] = self._allocate()
        columns = ["id", "seq", "body", *(_column(f) for f in spec.fields), *(_view_column(v) for v in spec.views)]
        values = [doc["id"], doc.get("seq"), _dumps(doc), *(doc.get(f) for f in spec.fields),
                  *_view_values(self.store, collection, doc)]
        sql = (f"{verb} INTO {_table(collection)} ({','.join(columns)}) "
               f"VALUES ({','.join('?' * len(columns))})")
        try:
            self.conn.execute(sql, values)
        except sqlite3.IntegrityError as exc:
            raise self.store._unique_violation(collection, exc) from exc
        return doc

    def _allocate_block(self, count: int) -> list[int]:
        if count == 0:
            return []
        (last,) = self.conn.execute(
            "UPDATE meta SET value = value + ? WHERE key = 'seq' RETURNING value", (count,)).fetchone()
        seqs = list(range(int(last) - count + 1, int(last) + 1))
        if self.store.hooks.after_allocate:
            for seq in seqs:
                self.store.hooks.after_allocate(seq)
        return seqs

    def _stored(self, collection: str, ids: list[str], what: str) -> list[tuple[Any, ...]]:
        """Rows ``SELECT id, <what>`` of the ids, in chunks that stay below SQLite's bound on parameters."""
        rows: list[tuple[Any, ...]] = []
        table = _table(collection)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            rows.extend(self.conn.execute(
                f"SELECT id, {what} FROM {table} WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        return rows

    def _write_many(self, collection: str, docs: list[Document], verb: str) -> list[Document]:
        spec = self.store.spec(collection)
        for doc in docs:
            self.store.check_document(collection, doc)
        docs = [dict(doc) for doc in docs]
        if spec.tracked:
            for doc, seq in zip(docs, self._allocate_block(len(docs)), strict=True):
                doc["seq"] = seq
        fields = spec.fields
        columns = ["id", "seq", "body", *(_column(f) for f in fields), *(_view_column(v) for v in spec.views)]
        sql = (f"{verb} INTO {_table(collection)} ({','.join(columns)}) "
               f"VALUES ({','.join('?' * len(columns))})")
        rows = [(doc["id"], doc.get("seq"), _dumps(doc), *(doc.get(f) for f in fields),
                 *_view_values(self.store, collection, doc)) for doc in docs]
        try:
            self.conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise self.store._unique_violation(collection, exc) from exc
        return docs

    def get_many(self, collection: str, ids: Any) -> dict[str, Document]:
        self.store.spec(collection)
        wanted = list(dict.fromkeys(ids))
        return {row[0]: orjson.loads(row[1]) for row in self._stored(collection, wanted, "body")}

    def insert_many(self, collection: str, docs: Any) -> list[bool]:
        self.store.spec(collection)
        docs = list(docs)
        taken = {row[0] for row in self._stored(collection, list({doc.get("id") for doc in docs}), "1")}
        fresh: list[Document] = []
        answers: list[bool] = []
        for doc in docs:
            new = doc.get("id") not in taken
            if new:
                taken.add(doc.get("id"))
                fresh.append(doc)
            answers.append(new)
        self._write_many(collection, fresh, "INSERT")
        return answers

    def put_many(self, collection: str, docs: Any, *, expect_seqs: Any = None) -> list[Document]:
        self.store.spec(collection)
        docs = list(docs)
        if expect_seqs is not None:
            expected = list(expect_seqs)
            if len(expected) != len(docs):
                raise ValueError("put_many: one expect_seq per document")
            ids = [doc.get("id") for doc in docs]
            if len(set(ids)) != len(ids):  # a second put of one id expects the first's new seq
                return [self.put(collection, doc, expect_seq=seq) for doc, seq in zip(docs, expected, strict=True)]
            current = dict(self._stored(collection, ids, "seq"))
            for id, seq in zip(ids, expected, strict=True):
                if (id in current) != (seq is not None) or (seq is not None and current[id] != seq):
                    raise WriteConflict(f"{collection}/{id} changed since it was read")
        return self._write_many(collection, docs, "INSERT OR REPLACE")

    def insert(self, collection: str, doc: Document) -> bool:
        self.store.spec(collection)
        if self.conn.execute(f"SELECT 1 FROM {_table(collection)} WHERE id = ?", (doc.get("id"),)).fetchone():
            return False
        self._write(collection, doc, "INSERT")
        return True

    def put(self, collection: str, doc: Document, *, expect_seq: Any = _UNSET) -> Document:
        if expect_seq is not _UNSET:
            row = self.conn.execute(f"SELECT seq FROM {_table(collection)} WHERE id = ?",
                                    (doc.get("id"),)).fetchone()
            current = None if row is None else row[0]
            if (row is None) != (expect_seq is None) or (row is not None and current != expect_seq):
                raise WriteConflict(f"{collection}/{doc.get('id')} changed since it was read")
        return self._write(collection, doc, "INSERT OR REPLACE")

    def delete(self, collection: str, id: str) -> bool:
        if self.store.spec(collection).tracked:
            raise SchemaError(f"{collection} is tracked: record a status change instead of deleting")
        return self.conn.execute(f"DELETE FROM {_table(collection)} WHERE id = ?", (id,)).rowcount > 0

    def remove(self, collection: str, where: Where, *, limit: int | None = None) -> int:
        self.store.check_removal(collection, where, limit)
        params: list[Any] = []
        condition = _where_sql(where, params)
        table = _table(collection)
        if limit is None:
            sql = f"DELETE FROM {table} WHERE {condition}"
        else:
            sql = f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {condition} LIMIT ?)"
            params.append(limit)
        return self.conn.execute(sql, params).rowcount

    def increment(self, collection: str, id: str, field: str, by: int = 1,
                  defaults: Document | None = None) -> Document:
        doc = self.get(collection, id) or {**(defaults or {}), "id": id}
        doc[field] = int(doc.get(field) or 0) + by
        return self._write(collection, doc, "INSERT OR REPLACE")

    def reserve(self, count: int) -> None:
        """Numbers are taken under the write lock, one statement each: nothing to reserve."""

    def advance(self, collection: str, id: str, field: str, value: Any) -> Any:
        # The unit's write lock serialises every writer, so a read and a write are enough.
        if self.store.spec(collection).tracked:
            raise SchemaError("advance is for untracked collections (the clock)")
        doc = self.get(collection, id) or {"id": id}
        if field in doc and doc[field] >= value:
            return doc[field]
        doc[field] = value
        self._write(collection, doc, "INSERT OR REPLACE")
        return value


class SQLiteStore(Store):
    """Store on a SQLite file. ``sqlite:///relative/path`` or ``sqlite:////absolute/path``."""

    def __init__(self, url: str, collections: list[CollectionSpec], *, timeout: float = 30.0,
                 strict_queries: bool | None = None):
        super().__init__(collections, strict_queries=strict_queries)
        self.url = url
        self.path = url.removeprefix("sqlite:///")
        if not self.path or self.path == url:
            raise StoreUnavailable(f"not a sqlite URL: {url!r}")
        self.timeout = timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # SQLite's own busy wait sleeps up to 100 ms between tries and favours no one, so threads of one
        # worker queue for the write lock here instead and wait only for other processes inside SQLite.
        self._writing = threading.Lock()
        self._closed = False

    # -- connections ------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StoreUnavailable("the store is closed")
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # Field data cannot be collected twice: pay an fsync per commit for durability.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._connect()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- schema -----------------------------------------------------------------------
    def ensure_schema(self) -> None:
        with self.transaction() as tx:
            conn = tx.conn  # type: ignore[attr-defined]
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)")
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('seq', 0)")
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 0)")
            for spec in self.collections.values():
                self._ensure_collection(conn, spec)
                self._ensure_views(conn, spec)
            version = int(conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
            for target in pending_migrations(version):
                target.migrate(self, tx)
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (target.version,))

    def _ensure_collection(self, conn: sqlite3.Connection, spec: CollectionSpec) -> None:
        table = _table(spec.name)
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} "
                     "(id TEXT PRIMARY KEY, seq INTEGER, body TEXT NOT NULL)")
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name in spec.fields:
            if f"f_{name}" not in have:
                # A field indexed by a newer version: add its column and fill it from the bodies.
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {_column(name)}")
                conn.execute(f"UPDATE {table} SET {_column(name)} = json_extract(body, ?)", (f"$.{name}",))
        if spec.tracked:
            conn.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS "ix_{spec.name}__seq" ON {table}(seq)')
        for unique, indexes in ((True, spec.unique), (False, spec.indexes)):
            for index in indexes:
                name = f"{'ux' if unique else 'ix'}_{spec.name}__{'_'.join(index)}"
                cols = ",".join(_column(f) for f in index)
                kind = "UNIQUE INDEX" if unique else "INDEX"
                conn.execute(f'CREATE {kind} IF NOT EXISTS "{name}" ON {table}({cols})')
        for index in spec.retired:
            conn.execute(f'DROP INDEX IF EXISTS "ix_{spec.name}__{"_".join(index)}"')

    def _ensure_views(self, conn: sqlite3.Connection, spec: CollectionSpec) -> None:
        """Encode every stored document's views again when the store holds views of another version
        (or none yet: a store written before the collection had views)."""
        if not spec.views:
            return
        table = _table(spec.name)
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name in spec.views:
            if f"v_{name}" not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {_view_column(name)} BLOB")
        key = _views_key(spec.name)
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is not None and int(row[0]) == spec.views_version:
            return
        log.info("%s: encoding the views of every stored document (views version %s)", spec.name, spec.views_version)
        sets = ", ".join(f"{_view_column(name)} = ?" for name in spec.views)
        after = ""
        while True:
            rows = conn.execute(f"SELECT id, body FROM {table} WHERE id > ? ORDER BY id LIMIT ?",
                                (after, _CHUNK)).fetchall()
            if not rows:
                break
            conn.executemany(f"UPDATE {table} SET {sets} WHERE id = ?",
                             [(*_view_values(self, spec.name, orjson.loads(body)), id) for id, body in rows])
            after = rows[-1][0]
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, spec.views_version))

    def schema_version(self) -> int:
        with self._reading() as conn:
            try:
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            except sqlite3.OperationalError:
                return 0
            return int(row[0]) if row else 0

    def ping(self) -> None:
        with self._reading() as conn:
            try:
                conn.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
            except sqlite3.Error as exc:
                raise StoreUnavailable(str(exc)) from exc

    def _unique_violation(self, collection: str, exc: sqlite3.IntegrityError) -> Exception:
        spec = self.spec(collection)
        message = str(exc)
        for index in spec.unique:
            if all(f"f_{f}" in message for f in index):
                return UniqueViolation(collection, index)
        return UniqueViolation(collection, ("id",))

    # -- reads ------------------------------------------------------------------------
    def _get(self, conn: sqlite3.Connection, collection: str, id: str) -> Document | None:
        self.spec(collection)
        row = conn.execute(f"SELECT body FROM {_table(collection)} WHERE id = ?", (id,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def _select(self, collection: str, where: Where | None, *, order_by: str | None, after: Any = None,
                limit: int | None = None, what: str = "body") -> tuple[str, list[Any]]:
        """The SQL of a read (``order_by`` None: a count) and its parameters."""
        self.check_where(collection, where)
        self.check_query(collection, where, order_by)
        params: list[Any] = []
        if order_by is None:
            return f"SELECT COUNT(*) FROM {_table(collection)} WHERE {_where_sql(where, params)}", params
        field, descending = self.check_order(collection, order_by)
        sql = f"SELECT {what} FROM {_table(collection)} WHERE {_where_sql(where, params)}"
        col, direction = _column(field), "DESC" if descending else "ASC"
        op = "<" if descending else ">"
        if after is not None:
            if field in UNIQUE_ORDERS:
                sql += f" AND {col} {op} ?"
                params.append(after)
            else:
                sql += f" AND ({col}, id) {op} (?, ?)"
                params.extend(after)
        # id and seq are unique: a tie-break would only stop an index on (..., seq) serving the order.
        sql += f" ORDER BY {col} {direction}" + ("" if field in UNIQUE_ORDERS else f", id {direction}")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return sql, params

    def _find(self, conn: sqlite3.Connection, collection: str, where: Where | None, *, order_by: str,
              after: Any = None, limit: int | None = None) -> list[Document]:
        sql, params = self._select(collection, where, order_by=order_by, after=after, limit=limit)
        return [orjson.loads(row[0]) for row in conn.execute(sql, params)]

    def explain(self, collection: str, where: Where | None = None, *, order_by: str | None = "id") -> list[str]:
        """SQLite's plan for a read (``order_by`` None: a count), one line per step: for tests of
        the query registry and for an operator wondering why a listing is slow."""
        sql, params = self._select(collection, where, order_by=order_by)
        with self._reading() as conn:
            return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]

    def get(self, collection: str, id: str) -> Document | None:
        with self._reading() as conn:
            return self._get(conn, collection, id)

    def find(self, collection: str, where: Where | None = None, *, order_by: str = "id",
             after: Any = None, limit: int | None = None) -> list[Document]:
        with self._reading() as conn:
            return self._find(conn, collection, where, order_by=order_by, after=after, limit=limit)

    def iterate(self, collection: str, where: Where | None = None, *, order_by: str = "id",
                batch: int = 500) -> Iterator[Document]:
        field = order_by.removeprefix("-")
        after: Any = None
        while True:
            page = self.find(collection, where, order_by=order_by, after=after, limit=batch)
            yield from page
            if len(page) < batch:
                return
            last = page[-1]
            after = last[field] if field in UNIQUE_ORDERS else (last.get(field), last["id"])

    def count(self, collection: str, where: Where | None = None) -> int:
        sql, params = self._select(collection, where, order_by=None)
        with self._reading() as conn:
            return int(conn.execute(sql, params).fetchone()[0])

    def visible_seq(self) -> int:
        with self._reading() as conn:
            return int(conn.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0])

    def changes(self, collection: str, since: int, *, where: Where | None = None,
                limit: int = 500, upto: int | None = None) -> list[Document]:
        bound = self._changes_bound(collection, upto)
        return self.find(collection, {**(where or {}), "seq": Range(gt=since, lte=bound)},
                         order_by="seq", limit=limit)

    def encoded_changes(self, collection: str, view: str, since: int, *, where: Where | None = None,
                        limit: int = 500, upto: int | None = None) -> list[tuple[int, str, bytes]]:
        bound = self._changes_bound(collection, upto, view)
        column = _view_column(view)
        # The body only of a row without its view (written before views were stored).
        sql, params = self._select(collection, {**(where or {}), "seq": Range(gt=since, lte=bound)}, order_by="seq",
                                   limit=limit, what=f"seq, id, {column}, CASE WHEN {column} IS NULL THEN body END")
        with self._reading() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [(seq, id, unpack_view(stored) if stored is not None
                 else self.view_of(collection, view, orjson.loads(body))) for seq, id, stored, body in rows]

    # -- writes -----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Writer]:
        writer = getattr(self._local, "writer", None)
        if writer is not None:  # nested units of work join the outer one
            yield writer
            return
        conn = self._connect()
        if not self._writing.acquire(timeout=self.timeout):
            raise StoreUnavailable("the store is busy: another write of this process took too long")
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"the store is busy or unwritable: {exc}") from exc
            writer = _SQLiteWriter(self, conn)
            self._local.writer = writer
            try:
                yield writer
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.OperationalError as exc:
                    conn.execute("ROLLBACK")
                    raise StoreUnavailable(f"commit failed: {exc}") from exc
            finally:
                self._local.writer = None
        finally:
            self._writing.release()

    # -- care of the data -------------------------------------------------------------
    def backup(self, destination: str) -> None:
        """SQLite's online backup: a consistent copy even while other connections write."""
        Path(destination).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{destination}.partial"
        if os.path.exists(tmp):
            os.remove(tmp)
        target = sqlite3.connect(tmp)
        try:
            with self._reading() as conn:
                conn.backup(target)
        finally:
            target.close()
        os.replace(tmp, destination)

    def restore_from(self, source: str) -> None:
        """Replace this store's content with the backup at ``source`` (the server should be stopped)."""
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            src.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            src.close()
            raise SchemaError(f"{source} is not a kunjung backup: {exc}") from exc
        try:
            src.backup(self._connect())
        finally:
            src.close()
