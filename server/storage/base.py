"""The storage interface every backend implements; its docstrings are the specification.

kunjung stores JSON documents in named collections. Each document has a string ``id``
unique in its collection. A collection declares, once, which top-level scalar fields are
indexed (and so may be queried) and whether it is *tracked*: every write to a tracked
collection is given a number from one store-wide **change sequence** (``seq``), and the
sequence is commit-ordered: a reader that has seen ``seq = n`` has seen, or will never
be shown, nothing below ``n``. That promise is what lets a device pull "everything
since my cursor" without ever skipping a change while others push (docs/design.md §4).

Every way a collection is read is declared once, as a :class:`Query` of its
:class:`CollectionSpec`, together with the index that serves it; both backends build their
indexes from the same specs, and in strict mode (the test suite's) a read that no declared
query covers raises :class:`SchemaError` naming its shape.

Writes happen in units of work. :meth:`Store.unit_of_work` is the one to use: it runs a
function in a transaction and runs it again, after a randomised backoff, when the store
reports a conflict that a retry can resolve; when its attempts run out it raises
:class:`WriteConflict`, which the HTTP layer answers with 409 (never 500).

The domain code above this layer is written once against :class:`Store`; the contract
suite in ``tests/storage`` runs the same tests against every backend.
"""

from __future__ import annotations

import abc
import logging
import os
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

Document = dict[str, Any]
T = TypeVar("T")
log = logging.getLogger("kunjung.storage")
# The test suite sets this so that a read no declared Query serves fails the test that made it.
STRICT_QUERIES_ENV = "KUNJUNG_STRICT_QUERIES"
UNIQUE_ORDERS = ("id", "seq")
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class StorageError(Exception):
    """Base of every error a backend raises; the HTTP layer translates these in one place."""


class StoreUnavailable(StorageError):
    """The store does not answer (file unreadable, server down, timeout). Retry later."""


class StoreMisconfigured(StoreUnavailable):
    """The store answers but cannot give what kunjung needs (e.g. MongoDB without transactions);
    the message says what to change. Start-up stops on it; a request meeting it answers 503."""


class CommitOutcomeUnknown(StoreUnavailable):
    """The store could not say whether a unit of work committed: it may have. The request should
    be retried as a whole; kunjung's writes are idempotent (events by id), so a retry that finds
    the unit applied answers as for a resend."""


class WriteConflict(StorageError):
    """A conditional write found the document changed since it was read, or the store reported
    a conflict between concurrent units of work. Retry the unit of work (:meth:`Store.unit_of_work`
    does); raised by ``unit_of_work`` itself once its attempts are spent."""


class UniqueViolation(StorageError):
    """A write would break a unique index other than ``id``."""

    def __init__(self, collection: str, fields: tuple[str, ...]):
        super().__init__(f"{collection}: another document already has this {', '.join(fields)}")
        self.collection = collection
        self.fields = fields


class SchemaError(StorageError):
    """A query or document names an unknown collection or a field that is not indexed."""


# Encoded views are stored deflated by every backend: a pull view repeats each field's stamp and is
# twice the size of the document it shows. Level 1 costs a third of what encoding the view does and
# inflates in a fraction of decoding the document; MongoDB then also sends a pull page's views to the
# application at a fifth of their size.
VIEW_LEVEL = 1


def pack_view(encoded: bytes) -> bytes:
    """An encoded view as a backend stores it."""
    return zlib.compress(encoded, VIEW_LEVEL)


def unpack_view(stored: bytes) -> bytes:
    """The encoded view a backend stored with :func:`pack_view`."""
    return zlib.decompress(stored)


def sort_key(order: str) -> tuple[str, ...]:
    """The keys a read ordered by ``order`` really sorts on: ``id`` and ``seq`` are unique, any
    other field is followed by ``id`` so that ties have one order (and keyset paging works)."""
    return (order,) if order in UNIQUE_ORDERS else (order, "id")


def index_serves(index: tuple[str, ...], filter: Iterable[str], order: str | None) -> bool:
    """Whether a B-tree index on ``index`` finds the documents of a filter on ``filter`` in the
    order ``order`` (None: no order, a count) without sorting them: the filtered fields first, in
    any order (equality, ``In`` or a range on the last of them), then the sort keys."""
    keys = set(filter) - ({order} if order else set())
    if set(index[:len(keys)]) != keys:
        return False
    if order is None:
        return True
    wanted = sort_key(order)
    return index[len(keys):len(keys) + len(wanted)] == wanted


@dataclass(frozen=True)
class Query:
    """One shape of read of a collection, and the index that serves it.

    ``filter`` are the fields the index narrows on; ``order`` the field sorted by (either
    direction; None for a count); ``index`` one of the collection's indexes, or ``("id",)`` (the
    primary key) or ``("seq",)`` (a tracked collection's sequence). ``residual`` are fields a read
    may add, checked on the documents the index finds (optional filters of a listing whose page
    the index already bounds). ``why`` names who asks.
    """

    filter: tuple[str, ...] = ()
    order: str | None = "id"
    index: tuple[str, ...] = ("id",)
    residual: tuple[str, ...] = ()
    why: str = ""

    def matches(self, fields: frozenset[str], order: str | None) -> bool:
        # A range on the order field itself is served by the same index (paging, "before").
        loose = set(self.residual) | ({order} if order else set())
        return order == self.order and fields - loose == set(self.filter) - loose


def shape_text(collection: str, fields: Iterable[str], order: str | None) -> str:
    """A read's shape as a sentence, for error messages and logs."""
    names = ", ".join(sorted(fields)) or "nothing"
    return f"{collection}: filter on {names}, " + (f"ordered by {order}" if order else "counted")


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection is: its indexed fields, indexes, unique indexes, tracking and reads.

    ``fields`` are the top-level document keys that may appear in queries and indexes.
    Their values must be scalars (str, int, float, bool or None). ``indexes`` and
    ``unique`` are tuples of those fields (``id`` and ``seq`` may appear too); ``tracked``
    collections get a ``seq``. ``geo`` names top-level keys holding a GeoJSON geometry (or
    nothing): MongoDB gives them a 2dsphere index for QGIS-style spatial queries; SQLite keeps
    them in the body. ``queries`` declares every shape of read the server makes, each with the
    index that serves it (checked here, so a declared query can never lack its index).
    ``retired`` are indexes an earlier version declared: start-up drops them, since every write
    pays for an index.

    ``views`` names encoded views of a tracked collection's documents: bytes that
    ``encode_views(doc)`` makes from a document (one per name, in order; None when the document has
    none), which the backend stores beside it on every write, so that a reader of many documents
    (a pull page) takes the stored bytes instead of decoding each document and encoding it again
    (:meth:`Store.encoded_changes`). ``views_version`` names what the encoder makes: start-up
    encodes every stored document again when the store holds views of another version, so raise
    it whenever ``encode_views`` would make other bytes from a stored document.
    """

    name: str
    fields: tuple[str, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    tracked: bool = False
    geo: tuple[str, ...] = ()
    queries: tuple[Query, ...] = ()
    retired: tuple[tuple[str, ...], ...] = ()
    views: tuple[str, ...] = ()
    encode_views: Callable[[Document], tuple[bytes, ...] | None] | None = None
    views_version: int = 1

    def __post_init__(self) -> None:
        if bool(self.views) != (self.encode_views is not None):
            raise SchemaError(f"{self.name}: views need their encoder, and an encoder its views")
        if self.views and not self.tracked:
            raise SchemaError(f"{self.name}: encoded views are read by change sequence; the collection must be tracked")
        for name in self.views:
            if not _IDENTIFIER.match(name):
                raise SchemaError(f"{name!r} is not a valid view name")
        for name in (self.name, *self.fields, *self.geo):
            if not _IDENTIFIER.match(name):
                raise SchemaError(f"{name!r} is not a valid collection or field name")
        for index in (*self.indexes, *self.unique):
            unknown = set(index) - set(self.fields) - {"seq", "id"}
            if unknown:
                raise SchemaError(f"{self.name}: index names undeclared fields {sorted(unknown)}")
        available = {("id",), *self.indexes, *self.unique, *((("seq",),) if self.tracked else ())}
        for query in self.queries:
            shape = shape_text(self.name, (*query.filter, *query.residual), query.order)
            if query.index not in available:
                raise SchemaError(f"{shape}: its index {query.index} is not declared")
            if not index_serves(query.index, query.filter, query.order):
                raise SchemaError(f"{shape}: index {query.index} does not serve it")
            unknown = {*query.filter, *query.residual, *(query.order or "id",)} - set(self.fields) - {"id", "seq"}
            if unknown:
                raise SchemaError(f"{shape}: names undeclared fields {sorted(unknown)}")


# Query conditions. A plain value means equality; these classes say more. They are
# classes, not "$in"-style dicts, so that user data can never be read as an operator.
@dataclass(frozen=True)
class In:
    """The field's value is one of ``values``."""

    values: tuple[Any, ...]

    def __init__(self, values: Iterable[Any]):
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class Range:
    """``gte <= value < lt`` (either bound may be None); ``gt`` excludes its bound."""

    gte: Any = None
    lt: Any = None
    gt: Any = None
    lte: Any = None


def prefix_range(prefix: str) -> Range:
    """Strings starting with ``prefix``, as a range an index can serve."""
    return Range(gte=prefix, lt=prefix + "\U0010ffff")


@dataclass(frozen=True)
class AnyOf:
    """Any of several conditions on one field holds (e.g. an exact village or a kecamatan prefix)."""

    options: tuple[Any, ...]

    def __init__(self, options: Iterable[Any]):
        object.__setattr__(self, "options", tuple(options))


Where = Mapping[str, Any]


@dataclass
class StoreHooks:
    """Test seams. ``after_allocate(seq)`` runs after a sequence number is taken and before
    the write carrying it commits, so a test can pull through that gap. ``before_retry(attempt,
    error)`` runs before :meth:`Store.unit_of_work` runs its function again; ``sleep`` is how it
    waits (a test may record the backoff instead of sleeping)."""

    after_allocate: Callable[[int], None] | None = None
    before_retry: Callable[[int, BaseException], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a unit of work is run again: full-jitter exponential backoff
    (the wait before attempt ``n + 1`` is uniform in ``[0, min(cap, initial * factor ** (n - 1))]``),
    as MongoDB's drivers do in ``with_transaction``, so that colliding writers spread out."""

    attempts: int = 8
    initial: float = 0.01
    factor: float = 2.0
    cap: float = 1.0

    def delay(self, attempt: int, draw: Callable[[], float] = random.random) -> float:
        return draw() * min(self.cap, self.initial * self.factor ** (attempt - 1))


class Writer(abc.ABC):
    """One unit of work: every write in it commits together or not at all (on backends
    with transactions) and reads in it see its own writes."""

    @abc.abstractmethod
    def get(self, collection: str, id: str) -> Document | None:
        """The document with this id, or None."""

    @abc.abstractmethod
    def find(self, collection: str, where: Where | None = None, *, order_by: str = "id",
             limit: int | None = None) -> list[Document]:
        """Documents matching ``where`` (see :meth:`Store.find`)."""

    @abc.abstractmethod
    def insert(self, collection: str, doc: Document) -> bool:
        """Insert ``doc`` unless a document with its id exists.

        Returns True when inserted, False when the id was already there; the stored
        document is then left exactly as it was (idempotent insert). Tracked
        collections give the new document a ``seq``.
        """

    @abc.abstractmethod
    def put(self, collection: str, doc: Document, *, expect_seq: int | object | None = ...) -> Document:
        """Insert or replace the document with ``doc["id"]``; returns what was stored.

        In a tracked collection the stored document gets a new ``seq`` above every
        other. With ``expect_seq`` the write happens only if the stored document's
        ``seq`` still equals it (None: only if absent); otherwise :class:`WriteConflict`.
        A backend may write only the paths that changed since the document was read in this
        unit of work, where that stores the same document as replacing it would.
        """

    # Batches: what a push does to hundreds of documents at once, in a few statements or round
    # trips instead of one per document. Each is the same as the single-document method called
    # for every document in turn, in order; only the cost differs.
    @abc.abstractmethod
    def get_many(self, collection: str, ids: Iterable[str]) -> dict[str, Document]:
        """The stored documents among ``ids``, by id; an id with no document is absent from the
        answer. The same as :meth:`get` for each id (and, on MongoDB, it remembers each document
        read, as :meth:`get` does, so that a later :meth:`put_many` writes only what changed)."""

    @abc.abstractmethod
    def insert_many(self, collection: str, docs: Iterable[Document]) -> list[bool]:
        """:meth:`insert` of each document in order; one answer per document: True when inserted,
        False when a document with its id was already stored or came earlier in ``docs`` (the
        stored one is then left exactly as it was). Tracked collections number the new documents
        in the order given. A unique index other than ``id`` refusing one raises
        :class:`UniqueViolation`, as :meth:`insert` does; in a unit of work nothing of it stays."""

    @abc.abstractmethod
    def put_many(self, collection: str, docs: Iterable[Document], *,
                 expect_seqs: Iterable[int | None] | None = None) -> list[Document]:
        """:meth:`put` of each document in order; returns what was stored, one per document.

        ``expect_seqs``, when given, holds one ``expect_seq`` per document (an int, or None for
        "only if absent"), and the batch is refused with :class:`WriteConflict` if any of them no
        longer holds; the unit of work it runs in then commits nothing (the caller runs it again,
        as for a single :meth:`put`)."""

    @abc.abstractmethod
    def delete(self, collection: str, id: str) -> bool:
        """Remove the document; True when it existed. Tracked collections never delete
        (a removal is a status change that must sync), so this is for untracked ones."""

    @abc.abstractmethod
    def remove(self, collection: str, where: Where, *, limit: int | None = None) -> int:
        """Remove the documents matching ``where`` (at most ``limit`` of them, any of them); how
        many went. Unlike :meth:`delete` this works on tracked collections too: it is for data this
        node stops holding altogether (a village hall dropping a village it no longer serves), not for
        a change readers must learn of. A removed tracked document leaves nothing in the change
        sequence: a reader that had it keeps it, one that had not never sees it, and its number
        stays dead. ``where`` must not be empty and must be a declared :class:`Query` of the collection
        read as a count (``order`` None), as :meth:`Store.count` needs; a ``limit`` lets a large
        removal run as several small units of work."""

    @abc.abstractmethod
    def increment(self, collection: str, id: str, field: str, by: int = 1,
                  defaults: Document | None = None) -> Document:
        """Atomically add ``by`` to an integer field, creating the document from
        ``defaults`` first if absent; returns the document after the increment."""

    @abc.abstractmethod
    def advance(self, collection: str, id: str, field: str, value: Any) -> Any:
        """Raise ``field`` of an untracked document to ``value`` if it is below it (creating the
        document if absent); returns the field's value afterwards, ``>= value``.

        Made for values that may only grow and for which being ahead is harmless (the server's
        clock): it never conflicts with a concurrent unit of work. On backends with transactions
        across processes it is written *outside* the unit of work, at once, so it is stored before
        the unit commits and stays if the unit rolls back; on SQLite it is part of the unit, whose
        write lock already serialises writers.
        """

    @abc.abstractmethod
    def reserve(self, count: int) -> None:
        """A hint that about ``count`` more tracked documents will be written in this unit, so a
        backend that allocates sequence numbers remotely may take them in one round trip."""


class Store(abc.ABC):
    """A document store with indexed fields and a commit-ordered change sequence.

    Backends are opened by URL (:func:`server.storage.open_store`), must be usable from
    several threads at once, and may be shared by several processes (gunicorn workers).
    """

    url: str
    hooks: StoreHooks

    retry = RetryPolicy()

    def __init__(self, collections: Iterable[CollectionSpec], *, strict_queries: bool | None = None):
        self.collections = {spec.name: spec for spec in collections}
        self.hooks = StoreHooks()
        if strict_queries is None:
            strict_queries = os.environ.get(STRICT_QUERIES_ENV, "").lower() in ("1", "true", "yes")
        self.strict_queries = strict_queries
        self._local = threading.local()
        self._unserved: set[tuple[str, frozenset[str], str | None]] = set()

    def spec(self, collection: str) -> CollectionSpec:
        try:
            return self.collections[collection]
        except KeyError:
            raise SchemaError(f"unknown collection {collection!r}") from None

    # -- life cycle -------------------------------------------------------------------
    @abc.abstractmethod
    def ensure_schema(self) -> None:
        """Create collections and indexes if missing and migrate the stored schema
        forward. Idempotent: safe at every start-up and from several processes."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Return if the store answers, else raise :class:`StoreUnavailable`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. The store may not be used afterwards."""

    @abc.abstractmethod
    def schema_version(self) -> int:
        """The schema version recorded in the store (0 for a store never migrated)."""

    # -- reads ------------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, collection: str, id: str) -> Document | None:
        """The document with this id, or None."""

    @abc.abstractmethod
    def find(self, collection: str, where: Where | None = None, *, order_by: str = "id",
             after: Any = None, limit: int | None = None) -> list[Document]:
        """Documents whose indexed fields match ``where``, ordered by ``order_by``.

        ``where`` maps an indexed field (or ``id``) to a value (equality), :class:`In`,
        :class:`Range` or :class:`AnyOf`. ``order_by`` is ``id``, ``seq`` or an indexed
        field, prefixed with ``-`` for descending; ``after`` is keyset paging: only
        documents whose ``order_by`` value is past it (for an order other than ``id`` and
        ``seq``, a ``(value, id)`` pair: those orders are unique, any other has its ties broken
        by ``id``). The filter and order must be a declared :class:`Query` of the collection.
        """

    @abc.abstractmethod
    def iterate(self, collection: str, where: Where | None = None, *, order_by: str = "id",
                batch: int = 500) -> Iterator[Document]:
        """Like :meth:`find` without a limit, but streamed in batches so that memory
        stays flat however many documents match."""

    @abc.abstractmethod
    def count(self, collection: str, where: Where | None = None) -> int:
        """How many documents match ``where``."""

    @abc.abstractmethod
    def changes(self, collection: str, since: int, *, where: Where | None = None,
                limit: int = 500, upto: int | None = None) -> list[Document]:
        """Documents of a tracked collection with ``since < seq <= upto``, in ``seq`` order.

        ``upto`` defaults to :meth:`visible_seq`. Reading only up to that bound is the
        commit-order promise: no document with a smaller ``seq`` can appear later.

        The bound may be *below* ``since``: a writer that read the counter before a reader's
        previous page and allocates only now holds the bound at its floor. Nothing is skipped
        then (the result is empty), but a reader must never move its cursor backwards: its next
        cursor is ``max(since, bound)``, else it would fetch again what it already has.
        """

    @abc.abstractmethod
    def encoded_changes(self, collection: str, view: str, since: int, *, where: Where | None = None,
                        limit: int = 500, upto: int | None = None) -> list[tuple[int, str, bytes]]:
        """:meth:`changes`, answered as ``(seq, id, bytes)``: each document's stored view ``view``
        (:attr:`CollectionSpec.views`) instead of the document, which is never decoded.

        The bytes are exactly what the collection's ``encode_views`` makes of the document as
        stored. A document whose view is not stored (written by a kunjung that did not store
        views) is encoded on the spot; one of which the encoder makes none raises
        :class:`StorageError`.
        """

    def _changes_bound(self, collection: str, upto: int | None, view: str | None = None) -> int:
        """The ``upto`` of a :meth:`changes` or :meth:`encoded_changes` read, after checking the
        collection is tracked (and has the view)."""
        spec = self.spec(collection)
        if not spec.tracked:
            raise SchemaError(f"{collection} is not tracked")
        if view is not None and view not in spec.views:
            raise SchemaError(f"{collection} has no view {view!r}")
        return self.visible_seq() if upto is None else upto

    def view_bytes(self, collection: str, doc: Document) -> tuple[bytes, ...] | None:
        """The encoded views of ``doc`` as stored (the document with its ``seq``), one per view
        name of the collection; None when the collection has no views or the encoder makes none."""
        spec = self.spec(collection)
        if spec.encode_views is None:
            return None
        made = spec.encode_views(doc)
        if made is not None and len(made) != len(spec.views):
            raise SchemaError(f"{collection}: the view encoder made {len(made)} views, not {len(spec.views)}")
        return made

    def view_of(self, collection: str, view: str, doc: Document) -> bytes:
        """One view of a stored document, encoded now (the fallback of :meth:`encoded_changes`)."""
        spec = self.spec(collection)
        if view not in spec.views:
            raise SchemaError(f"{collection} has no view {view!r}")
        made = self.view_bytes(collection, doc)
        if made is None:
            raise StorageError(f"{collection}/{doc.get('id')}: no {view} view can be made of this document")
        return made[spec.views.index(view)]

    @abc.abstractmethod
    def visible_seq(self) -> int:
        """The highest ``seq`` below which every allocated number is committed or dead.

        Numbers may be dead: a unit that rolled back, or a block of numbers allocated at once
        and not all used, leaves gaps that no document will ever fill."""

    # -- writes -----------------------------------------------------------------------
    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Writer]:
        """One attempt at a unit of work (see :class:`Writer`). Leaving the block by an
        exception rolls back what the backend can roll back and re-raises; a conflict with a
        concurrent unit (whether found by ``expect_seq`` or reported by the store) is raised as
        :class:`WriteConflict`, for the caller to retry. Prefer :meth:`unit_of_work`, which does.
        A block inside another unit of work on the same thread joins it."""

    def current_writer(self) -> Writer | None:
        """The unit of work open on this thread, if any."""
        return getattr(self._local, "writer", None)

    def unit_of_work(self, work: Callable[[Writer], T], *, attempts: int | None = None) -> T:
        """Run ``work(tx)`` in a transaction and return what it returns, retrying on conflict.

        ``work`` is run again from the start, in a fresh transaction and after a randomised
        backoff (:class:`RetryPolicy`), when it or the commit raises :class:`WriteConflict`:
        a stale ``expect_seq``, or what MongoDB reports as retryable (the
        ``TransientTransactionError`` label: WriteConflict 112, NoSuchTransaction 251, a primary
        stepping down; a duplicate ``_id`` inside a transaction, which aborts it). A commit
        whose outcome is unknown (``UnknownTransactionCommitResult``) is retried on its own,
        never by running ``work`` twice. So ``work`` must only read and write through ``tx``
        and keep no state between runs that a second run would double.

        After ``attempts`` runs (default ``retry.attempts``) it raises :class:`WriteConflict`.
        Inside another unit of work on the same thread, ``work`` joins it and runs once: the
        outer unit retries as a whole. Any other exception rolls back and propagates at once.
        """
        outer = self.current_writer()
        if outer is not None:
            return work(outer)
        attempts = self.retry.attempts if attempts is None else attempts
        last: WriteConflict | None = None
        for attempt in range(1, attempts + 1):
            if last is not None:
                if self.hooks.before_retry:
                    self.hooks.before_retry(attempt, last)
                self.hooks.sleep(self.retry.delay(attempt - 1))
            try:
                with self.transaction() as tx:
                    return work(tx)
            except WriteConflict as exc:
                last = exc
        raise WriteConflict(f"gave up after {attempts} attempts: {last}") from last

    def advance(self, collection: str, id: str, field: str, value: Any) -> Any:
        """:meth:`Writer.advance` outside any unit of work."""
        with self.transaction() as tx:
            return tx.advance(collection, id, field, value)

    def insert(self, collection: str, doc: Document) -> bool:
        """:meth:`Writer.insert` in a unit of work of its own (retried on conflict)."""
        return self.unit_of_work(lambda tx: tx.insert(collection, doc))

    def put(self, collection: str, doc: Document, **kwargs: Any) -> Document:
        """:meth:`Writer.put` in a unit of work of its own: retried on conflict, except with
        ``expect_seq``, whose conflict a retry would only meet again."""
        if "expect_seq" in kwargs:
            with self.transaction() as tx:
                return tx.put(collection, doc, **kwargs)
        return self.unit_of_work(lambda tx: tx.put(collection, doc, **kwargs))

    def delete(self, collection: str, id: str) -> bool:
        """:meth:`Writer.delete` in a unit of work of its own (retried on conflict)."""
        return self.unit_of_work(lambda tx: tx.delete(collection, id))

    def remove(self, collection: str, where: Where, *, limit: int | None = None) -> int:
        """:meth:`Writer.remove` in a unit of work of its own (retried on conflict)."""
        return self.unit_of_work(lambda tx: tx.remove(collection, where, limit=limit))

    def increment(self, collection: str, id: str, field: str, by: int = 1,
                  defaults: Document | None = None) -> Document:
        """:meth:`Writer.increment` in a unit of work of its own (retried on conflict)."""
        return self.unit_of_work(lambda tx: tx.increment(collection, id, field, by, defaults))

    # -- care of the data -------------------------------------------------------------
    def backup(self, destination: str) -> None:
        """Write a consistent copy of the store to ``destination`` while it is in use."""
        raise StorageError(f"{type(self).__name__} has no built-in backup; see README")

    # -- helpers shared by backends ------------------------------------------------------
    def check_query(self, collection: str, where: Where | None, order_by: str | None) -> None:
        """Refuse (strict mode) or log once (otherwise) a read that no declared :class:`Query`
        of the collection serves; ``order_by`` None is a count."""
        spec = self.spec(collection)
        fields = frozenset(where or ())
        order = order_by.removeprefix("-") if order_by else None
        if any(query.matches(fields, order) for query in spec.queries):
            return
        shape = shape_text(collection, fields, order)
        if self.strict_queries:
            raise SchemaError(f"{shape}: no declared query serves this read; declare a Query with "
                              "the index that serves it in the collection's spec (server/store.py)")
        key = (collection, fields, order)
        if key not in self._unserved:
            self._unserved.add(key)
            log.warning("%s: no declared query serves this read (it may scan or sort)", shape)

    def check_removal(self, collection: str, where: Where, limit: int | None) -> None:
        """What every backend's :meth:`Writer.remove` checks first."""
        if not where:
            raise SchemaError(f"{collection}: a removal names what it removes (an empty filter would empty it)")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise SchemaError(f"{collection}: a removal's limit is a positive integer")
        self.check_where(collection, where)
        self.check_query(collection, where, None)

    def check_where(self, collection: str, where: Where | None) -> None:
        spec = self.spec(collection)
        allowed = {"id", "seq", *spec.fields}
        for key in where or {}:
            if key not in allowed:
                raise SchemaError(f"{collection}: {key!r} is not an indexed field")

    def check_order(self, collection: str, order_by: str) -> tuple[str, bool]:
        name = order_by.removeprefix("-")
        self.check_where(collection, {name: None})
        return name, order_by.startswith("-")

    def check_document(self, collection: str, doc: Document) -> None:
        spec = self.spec(collection)
        if not isinstance(doc.get("id"), str) or not doc["id"]:
            raise SchemaError(f"{collection}: a document needs a non-empty string id")
        for name in spec.fields:
            value = doc.get(name)
            if value is not None and not isinstance(value, str | int | float | bool):
                raise SchemaError(f"{collection}.{name} is indexed and must be a scalar")
